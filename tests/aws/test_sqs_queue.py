"""SqsWorkQueue on moto's SQS, with the queues `slurmctl aws bootstrap` creates (DLQ redrive,
delay, visibility). No assertion depends on how fast the machine is: the delays and visibility
timeouts used are far longer than any test step."""

from __future__ import annotations

from typing import Any

import pytest

from slurmctl.errors import StorageError
from slurmctl.storage.aws import schema
from slurmctl.storage.aws.bootstrap import ensure_queues
from slurmctl.storage.aws.queue import SqsWorkQueue
from slurmctl.storage.aws.settings import AwsSettings

pytestmark = pytest.mark.aws


@pytest.fixture
def settings(moto_spec: dict[str, Any]) -> AwsSettings:
    s = AwsSettings.from_spec(moto_spec)
    ensure_queues(s)
    return s


def test_send_receive_ack(settings: AwsSettings) -> None:
    q = SqsWorkQueue(settings)
    q.send({"job": "j1", "task": "t0000001"})
    [m] = q.receive(visibility_s=300)
    assert m.body == {"job": "j1", "task": "t0000001"} and m.receives == 1
    assert q.receive() == []  # in flight: hidden from other consumers
    q.ack(m)
    q.ack(m)  # idempotent
    assert q.approximate_depth() == 0


def test_delay_hides_a_message(settings: AwsSettings) -> None:
    q = SqsWorkQueue(settings, "retry")
    q.send({"task": "later"}, delay_s=600)
    assert q.receive() == []
    with pytest.raises(StorageError):
        q.send({"task": "x"}, delay_s=901)


def test_nack_and_dead_letter_after_max_receives(settings: AwsSettings) -> None:
    q = SqsWorkQueue(settings)
    dlq = SqsWorkQueue(settings, schema.DLQ_NAME)
    q.send({"task": "poison"})
    for i in range(schema.MAX_RECEIVES):
        [m] = q.receive(visibility_s=300)
        assert m.receives == i + 1
        q.nack(m)  # the worker gave up on it
    assert q.receive(visibility_s=300) == []  # the next receive redrives it to the DLQ
    [dead] = dlq.receive(visibility_s=300)
    assert dead.body == {"task": "poison"}


def test_missing_queue_is_a_clear_error(moto_spec: dict[str, Any]) -> None:
    q = SqsWorkQueue(AwsSettings.from_spec({**moto_spec, "queue_prefix": "absent-"}))
    with pytest.raises(StorageError, match="does not exist"):
        q.send({"x": 1})
