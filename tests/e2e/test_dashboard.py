"""The dashboard's data and files from a real job (tests/e2e/conftest.py: dash_job): it agrees with
`status` and `analyze-errors`, aggregates the per-attempt metrics and logs, tolerates a job that has
none and damaged files, and the commands exit with the documented codes."""

from __future__ import annotations

import gzip
import json
import re
import shutil

from slurmctl.dashboard.data import collect, log_key, metrics_key, task_detail
from slurmctl.dashboard.render import job_page, script_json
from slurmctl.failures.analyze import analyze
from slurmctl.status import progress
from slurmctl.storage.open import open_backend
from tests.e2e.cli import slurmctl


def _backend(root):
    return open_backend({"kind": "local", "root": str(root)})


def _ids(cols):
    out, acc = [], 0
    for d in cols["id"]:
        acc += d
        out.append(acc)
    return out


def test_agrees_with_status_and_analyze(dash_job):
    b = _backend(dash_job.root)
    d = collect(b, dash_job.job_id)
    p = progress(b, dash_job.job_id)
    a = analyze(b, dash_job.job_id)
    assert d["job"]["state"] == p.state == "failed"
    assert d["states"] == p.task_states and d["states"]["failed"] == 1
    assert d["job"]["tasks"] == p.tasks > 60 and d["job"]["retry_tasks"] == p.retry_tasks > 0
    assert (d["failed_items"], d["failed_tasks"]) == (a.failed_items, a.failed_tasks) == (a.failed_items, 1)
    assert [g["id"] for g in d["signatures"]] == [g.id for g in a.groups]
    assert d["categories"] == {"permanent": 29, "transient": 29, "resources": 5, "unknown": 1}
    # The table: every task once, in id order, with its state and counts.
    cols = d["table"]["cols"]
    assert _ids(cols) == list(range(p.tasks))
    states = d["table"]["states"]
    assert [states[s] for s in cols["st"]].count("failed") == 1
    assert states[cols["st"][32]] == "failed"
    t = d["table"]
    assert t["err_at"] == [32] and t["errors"][t["err_code"][0]].startswith("worker pid")
    assert sum(cols["ok"][:60]) + sum(cols["fail"][:60]) == 300 - 5
    # The series: every succeeded task's items counted once, in bins that cover the run.
    s = d["series"]
    assert sum(s["ok"]) == sum(cols["ok"][i] for i, st in enumerate(cols["st"]) if states[st] == "succeeded")
    assert s["cumulative"][-1] == p.items_done  # the progress line ends where status is
    # "running" is the mean number of tasks running per bin: over all bins, the tasks' run time.
    busy = sum(x * t["unit_s"] for x in cols["dur"] if x >= 0)
    assert abs(sum(s["running"]) * s["step"] - busy) < 0.05 * p.tasks + 0.01 * len(s["running"]) * s["step"]
    assert len(s["ok"]) == len(s["failed"]) == len(s["running"]) <= 60 and s["step"] >= 1.0
    assert sum(r["categories"].get("transient", 0) for r in d["retries"]) == 29  # retried once each
    assert sum(r["tasks"] for r in d["retries"]) == p.retry_tasks


def test_metrics_logs_and_drill_down(dash_job):
    b = _backend(dash_job.root)
    d = collect(b, dash_job.job_id)
    cols = d["table"]["cols"]
    published = [i for i, st in enumerate(cols["st"]) if d["table"]["states"][st] == "succeeded"]
    r = d["resources"]
    assert r["tasks_with_metrics"] == len(published) and sum(r["cpu_hist"]) == len(published)
    assert sum(r["rss_hist"]) == len(published) and r["rss_mb"]["max"] == 220
    assert {cols["cpu"][i] for i in published} == {30, 60, 90}
    assert d["queue_wait"]["stats"]["max"] == 12.0 and sum(d["queue_wait"]["hist"]) == len(published)
    api = d["ratelimit"]["api"]
    assert api["rate"] == 400 and api["tasks"] == len(published)
    assert api["tokens"] == sum(cols["items"][i] for i in published)
    assert abs(sum(api["per_s"]) * d["series"]["step"] - api["tokens"]) < 1
    # The drill-down set: the failed task and every task a signature samples, each with its log.
    sampled = {s["task"] for g in d["signatures"] for s in g["samples"]}
    assert "t0000032" in d["details"] and sampled <= d["details"].keys()
    t = d["details"]["t0000000"]
    assert [e["item"] for e in t["errors"]] == [1, 3] and t["log_attempt"] == 1
    errors = [line for line in t["log"] if line["level"] == "ERROR"]
    assert [e["item"] for e in errors] == [1, 3] and "ValueError" in errors[0]["exc"]
    assert t["metrics"]["task"] == "t0000000" and t["result"]["items_failed"] == 2
    failed = d["details"]["t0000032"]
    assert failed["record"]["state"] == "failed" and failed["log"] == [] and failed["result"] is None
    # A detail of any task is the same as one of the set.
    assert task_detail(b, dash_job.job_id, "t0000000") == t


def test_a_job_without_logs_or_metrics(dash_job):
    d = collect(_backend(dash_job.root), dash_job.other_run)
    assert d["job"]["state"] == "succeeded" and d["failed_items"] == 0 and d["signatures"] == []
    assert d["resources"]["tasks_with_metrics"] == 0 and d["queue_wait"]["stats"] is None
    cols = d["table"]["cols"]
    assert cols["cpu"] == cols["rss"] == cols["qw"] == d["table"]["err_at"] == []
    assert d["ratelimit"]["api"] == {"tokens": None, "wait_s": None, "tasks": 0, "rate": 400.0}
    assert all(x["log"] == [] and x["metrics"] is None for x in d["details"].values())


def test_damaged_files_are_left_out(dash_job, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dash_job.root, root)
    b = _backend(root)
    job = dash_job.job_id
    (root / metrics_key(job, "t0000001", 1)).write_text("{not json")
    log = root / log_key(job, "t0000002", 1)
    whole = gzip.decompress(log.read_bytes())
    log.write_bytes(gzip.compress(whole)[:-30])  # cut short: the lines before the cut remain
    (root / log_key(job, "t0000003", 1)).write_bytes(b"not gzip")
    d = collect(b, job)
    before = collect(_backend(dash_job.root), job)
    assert d["resources"]["tasks_with_metrics"] == before["resources"]["tasks_with_metrics"] - 1
    assert d["table"]["cols"]["cpu"][1] == -1
    cut = task_detail(b, job, "t0000002")["log"]
    assert len(cut) > 0 and cut == task_detail(_backend(dash_job.root), job, "t0000002")["log"][: len(cut)]
    assert task_detail(b, job, "t0000003")["log"] == []


def test_page_embeds_markup_as_data():
    doc = {"x": "</script><!-- & <b>"}
    text = script_json(doc)
    assert "<" not in text and ">" not in text and "&" not in text and json.loads(text) == doc


def test_written_page_is_self_contained(dash_job):
    d = collect(_backend(dash_job.root), dash_job.job_id)
    html = job_page(d)
    # Nothing is fetched: no external script, stylesheet, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert html.count("<script") == 3 and "</script><b>" not in html


def test_dashboard_command(dash_job, tmp_path):
    out = tmp_path / "job.html"
    r = slurmctl("dashboard", dash_job.job_id, "-o", str(out), root=dash_job.root)
    assert r.code == 0, r.err
    assert out.stat().st_size > 10_000 and "wrote" in r.out and out.stat().st_mode & 0o044
    r = slurmctl("dashboard", "nope", "-o", str(tmp_path / "x.html"), root=dash_job.root)
    assert r.code == 5 and "nope" in r.err and not (tmp_path / "x.html").exists()
    r = slurmctl("dashboard", "../x", "-o", str(tmp_path / "x.html"), root=dash_job.root)
    assert r.code == 2 and "not a job id" in r.err
    deep = tmp_path / "no" / "dir" / "x.html"
    r = slurmctl("dashboard", dash_job.job_id, "-o", str(deep), root=dash_job.root)
    assert r.code == 0 and deep.exists()  # parent directories are made
    (tmp_path / "adir").mkdir()  # a directory where the file should go: cannot be replaced
    r = slurmctl("dashboard", dash_job.job_id, "-o", str(tmp_path / "adir"), root=dash_job.root)
    assert r.code == 1 and "cannot write" in r.err and "Traceback" not in r.err


def test_serve_refuses_bad_addresses(dash_job):
    import socket

    r = slurmctl("serve", "--port", "0", root=dash_job.root)
    assert r.code == 2 and "--port" in r.err
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = slurmctl("serve", "--port", str(port), root=dash_job.root, timeout=60)
    assert r.code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.err and "Traceback" not in r.err
