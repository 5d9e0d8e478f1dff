"""Metrics: handlers' own metrics, the job rollup from task summaries, and OpenMetrics text that
the reference parser (prometheus_client's OpenMetrics parser) accepts, family by family."""

from __future__ import annotations

import math

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from slurmctl.obs.metrics import FAMILIES, Custom, StoreStats, TaskMetrics, openmetrics, rollup


def summary(task: str, **over) -> dict:
    s = {
        "format": 1,
        "job": "j",
        "task": task,
        "attempt": 1,
        "host": "n1",
        "slurm_job_id": "5",
        "started": "2026-12-07T10:00:00.000Z",
        "ended": "2026-12-07T10:00:10.000Z",
        "wall_s": 10.0,
        "cpu_s": 8.0,
        "items_ok": 100,
        "items_failed": 2,
        "failed_by_category": {"transient": 2},
        "items_per_s": 10.2,
        "peak_rss_bytes": 50_000_000,
        "read_bytes": 1000,
        "written_bytes": 2000,
        "queue_wait_s": 3.0,
        "ratelimit": {"api": {"tokens": 10, "wait_s": 1.5}},
        "store": {"calls": 7, "seconds": 0.25},
        "custom": {"counters": {}, "gauges": {}, "histograms": {}},
    }
    s.update(over)
    return s


def custom(pages: int, size: float) -> dict:
    c = Custom()
    c.counter("pages", pages)
    c.gauge("temperature", size)
    c.histogram("page_bytes", size, buckets=[10, 100])
    return c.to_dict()


def test_custom_metrics_and_bad_names():
    c = Custom()
    c.counter("pages")
    c.counter("pages", 2)
    c.gauge("depth", 3)
    c.gauge("depth", 1)
    for v in (0.002, 0.3, 50):
        c.histogram("latency", v)
    d = c.to_dict()
    assert d["counters"] == {"pages": 3} and d["gauges"] == {"depth": 1.0}
    h = d["histograms"]["latency"]
    assert h["count"] == 3 and h["sum"] == pytest.approx(50.302)
    assert h["buckets"]["0.005"] == 1 and h["buckets"]["0.5"] == 2 and h["buckets"]["+Inf"] == 3
    with pytest.raises(ValueError, match="metric name"):
        c.counter("bad name")
    with pytest.raises(ValueError, match=">= 0"):
        c.counter("pages", -1)


def test_task_metrics_summary_has_the_contract_fields():
    store = StoreStats()
    tm = TaskMetrics("j", "t0000000", 1, "n1", None, store)
    store.add(0.5)
    tm.custom.counter("x")
    s = tm.summary(
        items_ok=5, items_failed=1, items_handled=6, failed_by_category={"unknown": 1}, queue_wait_s=None
    )
    assert set(s) == set(summary("t").keys())
    assert s["store"] == {"calls": 1, "seconds": 0.5}
    assert s["items_ok"] == 5 and s["queue_wait_s"] is None and s["custom"]["counters"] == {"x": 1}
    assert s["wall_s"] >= 0 and s["cpu_s"] >= 0 and s["peak_rss_bytes"] > 0


def test_rollup_sums_and_merges():
    r = rollup(
        [
            summary("t0", custom=custom(3, 5)),
            summary("t1", queue_wait_s=None, ended="2026-12-07T10:00:20.000Z", custom=custom(4, 50)),
        ]
    )
    assert r["tasks"] == 2 and r["items_ok"] == 200 and r["items_failed"] == 4
    assert r["failed_by_category"] == {"transient": 4}
    assert r["queue_wait_s"].count == 1 and r["wall_s"].count == 2
    assert r["ratelimit"] == {"api": {"tokens": 20, "wait_s": 3.0}}
    assert r["counters"] == {"pages": 7} and r["gauges"] == {"temperature": 50.0}
    h = r["histograms"]["page_bytes"]
    assert (h.count, h.sum, h.counts) == (2, 55.0, [1, 1, 0])
    assert (r["first_start"], r["last_end"]) == ("2026-12-07T10:00:00.000Z", "2026-12-07T10:00:20.000Z")


def test_openmetrics_text_is_valid_and_complete():
    text = openmetrics(
        'job "x"\\1',
        rollup([summary("t0", custom=custom(3, 5)), summary("t1", custom=custom(4, 500))]),
        {"succeeded": 2, "failed": 0},
    )
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on invalid text
    for name, (kind, _unit, _help) in FAMILIES.items():
        assert families[name].type == kind, name
    for name in ("slurmctl_custom_pages", "slurmctl_custom_temperature", "slurmctl_custom_page_bytes"):
        assert name in families
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    job = ("job", 'job "x"\\1')
    assert samples[("slurmctl_items_ok_total", (job,))] == 200
    assert samples[("slurmctl_items_failed_total", (("category", "transient"), job))] == 4
    assert samples[("slurmctl_custom_pages_total", (job,))] == 7
    assert samples[("slurmctl_custom_page_bytes_bucket", (job, ("le", "+Inf")))] == 2
    assert samples[("slurmctl_custom_page_bytes_count", (job,))] == 2
    assert samples[("slurmctl_ratelimit_wait_seconds_total", (job, ("limit", "api")))] == 3.0
    assert samples[("slurmctl_items_per_second", (job,))] == pytest.approx(204 / 10)
    assert samples[("slurmctl_tasks", (job, ("state", "succeeded")))] == 2


def test_openmetrics_of_a_job_without_summaries_is_valid():
    text = openmetrics("j", rollup([]))
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= set(FAMILIES) - {"slurmctl_tasks"}


def test_a_name_used_for_two_kinds_is_emitted_once():
    a = Custom()
    a.counter("n")
    b = Custom()
    b.gauge("n", 2)
    text = openmetrics("j", rollup([summary("t0", custom=a.to_dict()), summary("t1", custom=b.to_dict())]))
    families = [f for f in text_string_to_metric_families(text) if f.name == "slurmctl_custom_n"]
    assert len(families) == 1 and families[0].type == "counter"
    assert not math.isnan(families[0].samples[0].value)


def test_a_malformed_summary_is_left_out_of_the_rollup():
    """A summary with the wrong types (times as numbers, a string count) is skipped by the reader
    rather than stopping `slurmctl metrics` or the server's /jobs/{job}/metrics with a traceback."""
    from slurmctl.obs.read import well_formed

    good = {
        "format": 1,
        "started": "2026-12-07T10:00:00.000Z",
        "ended": None,
        "wall_s": 1.5,
        "items_ok": 3,
        "failed_by_category": {"transient": 1},
        "ratelimit": {"api": {"tokens": 2}},
        "store": {"calls": 4, "seconds": 0.1},
        "custom": {"counters": {"x": 1}},
    }
    assert well_formed(good)
    for bad in (
        {"started": 1765100000.0},
        {"items_ok": "3"},
        {"format": 2},
        {"items_ok": True},
        {"ratelimit": {"api": 5}},
        {"custom": {"counters": {"x": "1"}}},
        {"custom": []},
    ):
        assert not well_formed({**good, **bad}), bad
    assert not well_formed([good])
