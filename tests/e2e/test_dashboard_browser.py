"""The dashboard in real headless Chromium: the written file and the live pages of `slurmctl serve`
render without console errors, their charts have data, drill-down from the error list reaches a
task's log, and the task table filters, sorts and pages (tests/e2e/browser.py)."""

from __future__ import annotations

import httpx

from slurmctl.dashboard.data import collect
from slurmctl.dashboard.render import write
from slurmctl.server.app import create_app
from slurmctl.storage.open import open_backend
from tests.e2e.browser import Page, screenshot, serving
from tests.e2e.cli import slurmctl


def _backend(root):
    return open_backend({"kind": "local", "root": str(root)})


def _points(page, card: str, shape: str = ".pt") -> int:
    return page.locator(f"#card-{card} svg.chart {shape}").count()


def _rows(page) -> list[str]:
    return page.eval_on_selector_all("#tasks tr[data-task]", "rs => rs.map(r => r.dataset.task)")


def _charts_have_data(page) -> None:
    assert _points(page, "throughput") > 0
    assert page.locator("#card-progress svg.chart path.line").count() == 2
    assert "L" in page.get_attribute("#card-progress svg.chart path.line >> nth=1", "d")
    assert _points(page, "tasks-by-state") == 2  # succeeded, failed
    assert _points(page, "errors-by-category") == 4


def test_written_file(browser, dash_job, tmp_path):
    b = _backend(dash_job.root)
    out = tmp_path / "job.html"
    write(b, dash_job.job_id, out)
    d = collect(b, dash_job.job_id)
    cols, n = d["table"]["cols"], d["job"]["tasks"]
    p = Page(browser)
    page = p.open(out.as_uri())
    _charts_have_data(page)
    assert _points(page, "resource-use") > 0 and _points(page, "queue-wait") > 0
    assert _points(page, "rate-limits") > 0
    ok = [i for i in range(n) if d["table"]["states"][cols["st"][i]] == "succeeded"]
    records = sum(cols["items"][i] for i in ok)  # the fixture's counter: items of each published task
    assert page.inner_text("#custom-counters") == f"handler counters: records {records:,}"
    screenshot(page, "dashboard-file")

    # Markup in an error message is text, not markup.
    sigs = page.locator("#card-errors-by-signature")
    assert "</script><b>bold</b>" in sigs.inner_text() and sigs.locator("b:text-is('bold')").count() == 0

    # Drill-down: from the ValueError signature to a sampled task's log, where its error is.
    value_error = next(g for g in d["signatures"] if g["type"] == "ValueError")
    sig = page.locator(f"details[data-sig='{value_error['id']}']")
    if sig.get_attribute("open") is None:
        sig.locator("summary").click()
    sample = value_error["samples"][0]
    sig.locator(f"a[data-task='{sample['task']}']").first.click()
    drill = page.locator("#drill.open")
    assert drill.locator("h2").inner_text() == f"task {sample['task']}"
    errors = drill.locator("#log tr.lv-ERROR")
    assert errors.count() > 0 and f"item {sample['item']} failed: ValueError" in errors.first.inner_text()
    drill.locator("#log").scroll_into_view_if_needed()
    screenshot(page, "dashboard-drill-down", full_page=False)
    page.click("#drill-close")
    assert page.locator("#drill.open").count() == 0

    # A task the file does not carry in full: its table row, and the commands that show the rest.
    plain = next(f"t{i:07d}" for i in range(50) if f"t{i:07d}" not in d["details"])
    page.click(f"#tasks a[data-task='{plain}']")
    assert "slurmctl inspect" in page.inner_text("#drill") and "succeeded" in page.inner_text("#drill")
    page.click("#drill-close")

    # Filters.
    assert page.inner_text("#t-count") == f"{n} of {n} task(s)"
    page.select_option("#f-state", label="failed")
    assert _rows(page) == ["t0000032"] and page.inner_text("#t-count") == f"1 of {n} task(s)"
    page.select_option("#f-state", label="all")
    page.fill("#f-text", "t000001")
    assert _rows(page) == [f"t00000{i}" for i in range(10, 20)]
    page.fill("#f-text", "exited -9")  # error text
    assert _rows(page) == ["t0000032"]
    page.fill("#f-text", "")
    page.check("#f-failed")
    with_failed = [f"t{i:07d}" for i in range(n) if cols["fail"][i] > 0]
    assert _rows(page) == with_failed[:50]
    assert page.inner_text("#t-count").startswith(f"{len(with_failed)} of")
    page.uncheck("#f-failed")
    page.click("#card-tasks-by-state svg.chart rect.pt >> nth=1")  # the "failed" bar filters the table
    assert _rows(page) == ["t0000032"]
    page.select_option("#f-state", label="all")

    # Sorting: by time, longest first (ties by task id), then shortest first.
    page.click("#tasks th[data-col='dur']")
    assert page.get_attribute("#tasks th[data-col='dur']", "aria-sort") == "descending"
    by_dur = sorted(range(n), key=lambda i: (-cols["dur"][i], i))
    assert _rows(page) == [f"t{i:07d}" for i in by_dur[:50]]
    page.click("#tasks th[data-col='dur']")
    by_dur = sorted(range(n), key=lambda i: (cols["dur"][i], i))
    assert _rows(page) == [f"t{i:07d}" for i in by_dur[:50]]
    page.click("#tasks th[data-col='id']")

    # Paging.
    assert page.inner_text("#t-page") == "page 1 of 2" and page.is_disabled("#t-prev")
    page.click("#t-next")
    assert page.inner_text("#t-page") == "page 2 of 2" and page.is_disabled("#t-next")
    assert _rows(page) == [f"t{i:07d}" for i in range(50, n)]
    assert p.problems == []
    p.close()


def test_live_pages(browser, dash_job):
    app = create_app(_backend(dash_job.root))
    with serving(app) as url:
        p = Page(browser)
        page = p.open(url + "/")
        jobs = page.eval_on_selector_all("#jobs tr[data-job]", "rs => rs.map(r => r.dataset.job)")
        assert jobs == [dash_job.other_run, dash_job.job_id]  # newest first
        page.select_option("#f-name", "dash")
        assert page.locator("#history svg.chart .pt").count() == 2  # both runs of the name
        screenshot(page, "serve-jobs")
        page.click(f"#jobs a:text-is('{dash_job.job_id}')")
        page.wait_for_selector("body[data-ready='1']")
        assert page.url == f"{url}/jobs/{dash_job.job_id}"
        _charts_have_data(page)
        # Drill-down: the live page fetches any task from the API (the page itself carries none).
        sig = page.locator("#card-errors-by-signature details[open]")
        task = sig.locator("a.task").first
        name = task.get_attribute("data-task")
        task.click()
        page.wait_for_selector("#drill.open #log")
        assert page.locator("#drill h2").inner_text() == f"task {name}"
        assert page.locator("#drill #log tr.lv-ERROR").count() > 0
        page.click("#drill-close")
        page.click("#tasks a[data-task='t0000045']")
        page.wait_for_selector("#drill.open #log")
        assert "t0000045 published" in page.inner_text("#drill #log")
        # The home link goes back to the list.
        page.click("#drill-close")
        page.click("header a")
        page.wait_for_selector("#jobs")
        assert p.problems == []
        p.close()

        # The JSON API and its errors.
        with httpx.Client(base_url=url, timeout=30) as c:
            assert [j["id"] for j in c.get("/api/jobs").json()] == jobs
            job = c.get(f"/api/jobs/{dash_job.job_id}").json()
            assert job["job"]["tasks"] > 60 and job["details"] == {}
            r = c.get("/api/jobs/nope")
            assert r.status_code == 404 and "nope" in r.json()["error"]
            r = c.get("/api/jobs/-x")
            assert r.status_code == 400 and "not a job id" in r.json()["error"]
            for bad in ("t9999999", "x", "t00000001"):
                r = c.get(f"/api/jobs/{dash_job.job_id}/tasks/{bad}")
                assert r.status_code == 404 and r.json()["error"], bad
            r = c.get(f"/api/jobs/{dash_job.job_id}/tasks/t0000032")
            assert r.status_code == 200 and r.json()["record"]["state"] == "failed"
            # The scrape endpoint: the same text as `slurmctl metrics JOB`, valid OpenMetrics.
            r = c.get(f"/jobs/{dash_job.job_id}/metrics")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/openmetrics-text")
            cli = slurmctl("metrics", dash_job.job_id, root=dash_job.root)
            assert cli.code == 0 and r.text == cli.out, cli.err
            from prometheus_client.openmetrics.parser import text_string_to_metric_families

            assert any(f.name.startswith("slurmctl_") for f in text_string_to_metric_families(r.text))
            assert c.get("/jobs/nope/metrics").status_code == 404


def test_live_page_refreshes_a_running_job(browser, tmp_path):
    import time

    from slurmctl.lifecycle import create_job, create_tasks, set_job_state
    from slurmctl.model.core import JobStatus, TaskStatus
    from slurmctl.model.states import JobState, TaskState

    b = _backend(tmp_path / "root")
    create_job(b, JobStatus(job_id="live", name="live", state=JobState.CREATED))
    set_job_state(b, "live", JobState.PARTITIONED, total_items=20, tasks=2)
    now = time.time()
    create_tasks(
        b,
        "live",
        [
            TaskStatus(
                task_id="t0000000",
                state=TaskState.SUCCEEDED,
                attempt=1,
                items_total=10,
                items_done=10,
                started_at=now - 30,
                finished_at=now - 10,
            ),
            TaskStatus(
                task_id="t0000001",
                state=TaskState.RUNNING,
                attempt=1,
                items_total=10,
                items_done=4,
                started_at=now - 20,
                owner="h:1",
                lease_expires=now + 600,
            ),
        ],
    )
    set_job_state(b, "live", JobState.SUBMITTED)
    with serving(create_app(b, ttl_s=0, refresh_s=0.5)) as url:
        p = Page(browser)
        page = p.open(f"{url}/jobs/live")
        first = page.inner_text("#meta")
        assert "running" in first
        page.wait_for_function("t => document.querySelector('#meta').textContent !== t", arg=first)
        assert _points(page, "tasks-by-state") == 2 and p.problems == []
        p.close()
