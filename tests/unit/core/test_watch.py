"""watch(): scheduler polls grow while nothing changes; progress comes from the records."""

from __future__ import annotations

import json
import time

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.executors.base import Executor
from slurmctl.lifecycle import Element, Facts
from slurmctl.slurm.states import JobState as SlurmState
from slurmctl.watch import watch


class RecordingExecutor(Executor):
    """A scheduler that answers the same thing until ``finish_after`` polls, then the tasks succeed."""

    kind = "test"

    def __init__(self, backend, job, clock, finish_after: int) -> None:
        super().__init__(backend, job)
        self.clock = clock
        self.poll_times: list[float] = []
        self.finish_after = finish_after

    def submit(self, task_ids):
        return "nothing"

    def cancel(self):
        pass

    def dry_run(self, task_ids):
        return ""

    def poll(self):
        self.poll_times.append(self.clock.t)
        if len(self.poll_times) == self.finish_after:
            for tid in self.job.task_ids():  # a worker runs and publishes every task
                self.lifecycle.claim(tid, owner="w:1", items=1, lease_s=60, honour_leases=True)
                self.lifecycle.succeeded(tid, owner="w:1", items_done=1, items_failed=0)
        el = Element("123", 0, time.time(), SlurmState.RUNNING)
        return Facts(elements={el.name: el}, pool=[el])


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_scheduler_polls_back_off_while_unchanged(tmp_path):
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    (tmp_path / "job.yaml").write_text("name: w\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n")
    backend, job = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "r"))
    from slurmctl.lifecycle import set_job_state
    from slurmctl.model.states import JobState

    set_job_state(backend, job.job_id, JobState.SUBMITTED)
    clock = Clock()
    ex = RecordingExecutor(backend, job, clock, finish_after=8)
    seen = []
    final = watch(ex, seen.append, min_s=1.0, max_s=5.0, progress_s=0.5, sleep=clock.sleep, clock=clock)
    assert final.state == "succeeded"
    gaps = [round(b - a, 3) for a, b in zip(ex.poll_times, ex.poll_times[1:], strict=False)]
    # first answer is new (interval stays 1 s), then unchanged: 1.5, 2.25, 3.375, then capped at 5
    assert gaps == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 5.0]
    assert len(seen) > len(ex.poll_times)  # records are read more often than Slurm is asked
