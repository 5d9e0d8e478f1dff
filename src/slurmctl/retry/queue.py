"""Item retry tasks on SQS: the aws backend's retry queue, consumed by the pilots.

When a retry plan is recorded for a job on the aws backend whose tasks pilots run (Slurm, pilot
mode), the store side (``retry.store.plan_retries``) sends one message per retry task to the
``retry`` queue: ``{"job", "task", "not_before"}``, delayed by the backoff (SQS's DelaySeconds, at
most 900 s). A pilot receives from that queue before it looks through the job's tasks
(:class:`Inbox`) and claims the retry tasks of its job that are due — through the lifecycle, a
compare-and-set like every claim, so a duplicate message is harmless. A message it should not act
on goes back as a new message (sent, then the received one deleted), which starts a fresh receive
count: a delay over 900 s is re-queued with what is left of it, and another job's message (the
queue is shared by every job) is handed back at once, so that passing through the wrong pilots
never moves it to the dead-letter queue; a message of a job that is gone or being purged is
deleted (``slurmctl purge`` cannot receive a message that is still delayed). A message is deleted
as soon as it is taken: the task record, not the message, says whether the task still has to run,
and the pilots' look through the job's tasks (the retry manifests) finds every retry task whose
message was lost. ``slurmctl purge`` deletes the job's visible messages (their body names the job).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from slurmctl.errors import StorageError
from slurmctl.storage.base import Backend

log = logging.getLogger(__name__)

MAX_DELAY_S = 900  # SQS's largest DelaySeconds


def uses_queue(backend: Backend, config: Mapping[str, Any]) -> bool:
    """Whether the job's retry tasks go through the SQS retry queue: aws backend, pilot mode."""
    ex = config.get("executor") or {}
    return backend.spec.get("kind") == "aws" and ex.get("kind") == "slurm" and ex.get("mode") == "pilot"


def delay(not_before: float, now: float) -> int:
    """The DelaySeconds of a message for ``not_before``: what is left, at most 900 s."""
    return int(min(MAX_DELAY_S, max(0, math.ceil(not_before - now))))


def _queue(backend: Backend) -> Any:
    from slurmctl.storage.aws.queue import SqsWorkQueue
    from slurmctl.storage.aws.settings import AwsSettings

    return SqsWorkQueue(AwsSettings.from_spec(backend.spec), "retry")


def announce(backend: Backend, job_id: str, task_ids: Iterable[str], not_before: float) -> int:
    """Send one message per retry task, delayed until ``not_before``. Returns how many were sent.
    A failure is logged, not raised: the plan is recorded, and pilots find its tasks through the
    retry manifests."""
    q = _queue(backend)
    sent = 0
    try:
        for tid in task_ids:
            body = {"job": job_id, "task": tid, "not_before": not_before}
            q.send(body, delay_s=delay(not_before, time.time()))
            sent += 1
    except StorageError as exc:
        log.warning("job %s: retry tasks not sent to SQS (pilots find them anyway): %s", job_id, exc)
    return sent


class Inbox:
    """A pilot's side of the retry queue: ``take`` returns the due retry tasks of its job."""

    def __init__(self, backend: Backend, job_id: str, queue: Any = None) -> None:
        self.job_id = job_id
        self.queue = queue or _queue(backend)
        self.state = backend.state

    def _live(self, job_id: Any) -> bool:
        """Whether a job's messages are still wanted: it has a record and is not being purged (a
        delayed message is invisible to ``purge``, which deletes only what it can receive)."""
        from slurmctl.errors import ConfigError
        from slurmctl.storage import keys

        try:
            rec = self.state.get(keys.JOBS_TABLE, keys.job_state(str(job_id)))
        except ConfigError:  # not a job id (storage.keys): no job of ours
            return False
        return rec is not None and rec.value.get("state") != "purging"

    def take(self) -> list[str]:
        """Receive up to 10 messages; return the task ids of this job's that are due (each message
        deleted), send the others back as new messages. A queue that fails is logged and yields
        nothing this time (the pilot's look through the tasks goes on)."""
        try:
            return self._take()
        except StorageError as exc:
            log.warning("job %s: the SQS retry queue failed: %s", self.job_id, exc)
            return []

    def _take(self) -> list[str]:
        out: list[str] = []
        for m in self.queue.receive(max_messages=10, visibility_s=60, wait_s=0):
            body = m.body
            if not isinstance(body, dict):  # not ours (a list, a number): never stop a pilot for it
                log.warning("job %s: an SQS retry message that is not slurmctl's: %r", self.job_id, body)
                continue  # left alone: after its receives it goes to the dead-letter queue
            try:
                not_before = float(body.get("not_before", 0.0))
            except (TypeError, ValueError):
                not_before = 0.0
            if not math.isfinite(not_before):
                not_before = 0.0
            now = time.time()
            if body.get("job") == self.job_id and isinstance(body.get("task"), str) and not_before <= now:
                out.append(body["task"])
            elif "job" in body and "task" in body:
                if body["job"] == self.job_id:  # not due yet (a delay over 900 s): the rest of it
                    self.queue.send(body, delay_s=delay(not_before, now))
                elif self._live(body["job"]):  # another job's: back at once, with a fresh count
                    self.queue.send(body, delay_s=0)
            else:
                log.warning("job %s: an SQS retry message that is not slurmctl's: %s", self.job_id, body)
                continue  # left alone: after its receives it goes to the dead-letter queue
            self.queue.ack(m)
        return out
