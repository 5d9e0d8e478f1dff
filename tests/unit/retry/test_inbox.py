"""A pilot's retry inbox never stops on a message it cannot read (the SQS queue is shared by every
job's pilots: one bad message would otherwise stop each pilot that receives it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurmctl.retry.queue import Inbox
from slurmctl.storage.local import local_backend


@dataclass
class Msg:
    body: Any


class ListQueue:
    """The three calls Inbox makes, over a list (receive returns everything once)."""

    def __init__(self, bodies: list[Any]) -> None:
        self.msgs = [Msg(b) for b in bodies]
        self.sent: list[tuple[Any, float]] = []
        self.acked: list[Msg] = []

    def receive(self, **_: Any) -> list[Msg]:
        out, self.msgs = self.msgs, []
        return out

    def send(self, body: Any, delay_s: float = 0) -> None:
        self.sent.append((body, delay_s))

    def ack(self, m: Msg) -> None:
        self.acked.append(m)


def test_malformed_messages_are_left_alone_and_the_due_one_is_taken(tmp_path):
    backend = local_backend(tmp_path)
    q = ListQueue(
        [
            [1],
            "x",
            42,
            None,
            {"job": "j1", "task": "t0000001", "not_before": float("inf")},
            {"job": "j1", "task": "t0000002", "not_before": float("nan")},
            {"job": "j1", "task": "t0000003"},
        ]
    )
    assert Inbox(backend, "j1", queue=q).take() == ["t0000001", "t0000002", "t0000003"]
    assert len(q.acked) == 3  # the four malformed ones stay for the dead-letter queue
    assert q.sent == []
