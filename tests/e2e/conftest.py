"""Fixtures of the e2e tests: headless Chromium (``browser``); a real failing job run once by the
local executor, with per-attempt logs and metrics in the worker's shape (tests/e2e/observability.py),
and a second run of the same job name without them (a job run before logs and metrics). The
dashboard tests only read them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import ARGS, unavailable
from tests.e2e.cli import submit_wait, write_job

# 300 items in 60 tasks of 5. Item 160 kills its worker: task t0000032 fails as a whole (max_attempts
# 1). n % 10 == 1: ValueError (permanent); n % 10 == 3: TimeoutError (transient: retried once in item
# retry tasks, where it fails again); item 7: a message with markup, which the page must show as text.
HANDLER = """
import os, signal, time

def handle(record, ctx):
    n = record["n"]
    time.sleep(0.002)
    if n == 160:
        os.kill(os.getpid(), signal.SIGKILL)
    if n == 7:
        raise RuntimeError("closing </script><b>bold</b> & more")
    if n % 10 == 1:
        raise ValueError(f"bad value {n} in /in/{n}.json")
    if n % 10 == 3:
        raise TimeoutError(f"upstream took {n}.5 s")
    return {"n": n}
"""


@dataclass
class DashJob:
    root: Path
    job_id: str
    other_run: str  # a second, succeeded run of the same job name, with no logs nor metrics


@pytest.fixture(scope="session")
def dash_job(tmp_path_factory: pytest.TempPathFactory) -> DashJob:
    tmp = tmp_path_factory.mktemp("dashjob")
    (tmp / "failing.py").write_text(HANDLER)
    (tmp / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(300)))
    (tmp / "ok.jsonl").write_text("".join(json.dumps({"n": i * 10}) + "\n" for i in range(20)))
    common = (
        "name: dash\nhandler: {function: 'failing:handle'}\nbatch: {items: 5}\n"
        "retry: {max_attempts: 1, attempts: {transient: 2}, backoff: {base_s: 0, cap_s: 0}}\n"
        "executor: {kind: local, max_parallel: 2}\nlimits: {api: {rate: 400}}\n"
    )
    root = tmp / "root"
    job_id, r = submit_wait(write_job(tmp, "input: {path: in.jsonl}\n" + common), root)
    assert job_id and r.code != 0, r.err  # failed: one task was killed
    # n = 0, 10, ..., 190: none fails but 160 would kill: the second run takes items 0..150 only.
    (tmp / "ok.jsonl").write_text("".join(json.dumps({"n": i * 10}) + "\n" for i in range(16)))
    other, r = submit_wait(write_job(tmp, "input: {path: ok.jsonl}\n" + common, "ok.yaml"), root)
    assert other and r.code == 0, r.err
    # The second run stands for a job from before per-task logs and metrics: drop its files.
    for f in [
        *(root / "jobs" / other / "results").glob("t*/a*.metrics.json"),
        *(root / "jobs" / other / "results").glob("t*/a*.log.jsonl.gz"),
    ]:
        f.unlink()
    from slurmctl.storage.open import open_backend
    from tests.e2e.observability import add_task_files

    add_task_files(open_backend({"kind": "local", "root": str(root)}), job_id)
    return DashJob(root, job_id, other)


# Module scope: Playwright's sync API keeps an asyncio loop running in the main thread while it is
# open, and later tests that call asyncio.run (the scoreboard's Textual UI) would find it running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (the dev extra)")
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        unavailable(f"no chromium at {exe}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()
