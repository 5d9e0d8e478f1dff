"""``SqsWorkQueue``: at-least-once work hand-out on SQS (the queues of :mod:`.schema`).

A message is a small JSON document (a task reference, never data). ``receive`` hides it for
``visibility_s`` — the consumer's lease; ``extend`` renews the lease (heartbeat), ``ack`` deletes
it when the work is published, ``nack`` makes it visible again at once. A message received
``schema.MAX_RECEIVES`` times without an ack moves to the dead-letter queue (SQS redrive), so a
poison task cannot loop forever. Delivery is at least once: consumers must be idempotent — the
worker is (claiming a task is a compare-and-set; publishing is guarded by the ``.done`` marker).

Tasks are claimed through the state store; the ``retry`` queue carries item retry tasks to the
pilots of aws-backend jobs (:mod:`slurmctl.retry.queue`), the ``work`` queue is not used yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slurmctl.errors import StorageError
from slurmctl.storage.aws import schema
from slurmctl.storage.aws.retry import call, error_code
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter, make_client


@dataclass(frozen=True)
class Message:
    """One received message: its body and the receipt handle that acks/extends it."""

    body: dict[str, Any]
    receipt: str
    receives: int  # how many times SQS has delivered it (1 on first delivery)


class SqsWorkQueue:
    def __init__(
        self,
        settings: AwsSettings,
        queue: str = "work",
        *,
        client: Any = None,
        counter: RequestCounter | None = None,
    ) -> None:
        if queue not in schema.QUEUES:
            raise StorageError(f"unknown queue {queue!r} (known: {', '.join(schema.QUEUES)})")
        self.settings = settings
        self.name = settings.queue_name(queue)
        self.counter = counter or RequestCounter()
        self.sqs = client or make_client(settings, "sqs", self.counter)
        self._url: str | None = None

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return call(fn, what=what, deadline_s=self.settings.retry_deadline_s)
        except StorageError:
            raise
        except Exception as exc:
            code = error_code(exc)
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise StorageError(
                    f"SQS queue {self.name} does not exist",
                    hint="run `slurmctl aws bootstrap` (or terraform)",
                ) from exc
            raise StorageError(f"{what}: {code or type(exc).__name__}: {exc}") from exc

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._call(
                f"find queue {self.name}", lambda: self.sqs.get_queue_url(QueueName=self.name)
            )["QueueUrl"]
        return self._url

    def send(self, body: dict[str, Any], *, delay_s: int = 0) -> str:
        """Enqueue ``body`` (visible after ``delay_s``, at most 900). Returns the message id.
        Not idempotent: sending twice delivers twice (consumers are idempotent)."""
        if not 0 <= delay_s <= 900:
            raise StorageError(f"SQS delay must be 0..900 s, got {delay_s}")
        resp = self._call(
            f"send to {self.name}",
            lambda: self.sqs.send_message(
                QueueUrl=self.url, MessageBody=json.dumps(body, separators=(",", ":")), DelaySeconds=delay_s
            ),
        )
        return str(resp["MessageId"])

    def receive(self, *, max_messages: int = 1, visibility_s: int = 120, wait_s: int = 0) -> list[Message]:
        """Up to ``max_messages`` (1..10) messages, each hidden from others for ``visibility_s``.
        Waits up to ``wait_s`` (long polling, 0..20) when the queue is empty."""
        resp = self._call(
            f"receive from {self.name}",
            lambda: self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                VisibilityTimeout=visibility_s,
                WaitTimeSeconds=max(0, min(20, wait_s)),
                AttributeNames=["ApproximateReceiveCount"],
            ),
        )
        out = []
        for m in resp.get("Messages", []):
            try:
                body = json.loads(m["Body"])
            except ValueError:
                body = {"raw": m["Body"]}  # not ours: surfaced, never dropped silently
            receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            out.append(Message(body, m["ReceiptHandle"], receives))
        return out

    def extend(self, message: Message, visibility_s: int) -> None:
        """Keep ``message`` hidden for another ``visibility_s`` from now (a lease heartbeat)."""
        self._call(
            f"extend lease in {self.name}",
            lambda: self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=visibility_s
            ),
        )

    def nack(self, message: Message) -> None:
        """Give ``message`` back now (visible to the next receive). Counts as a receive."""
        self.extend(message, 0)

    def ack(self, message: Message) -> None:
        """Delete ``message``: the work is done. Idempotent."""
        self._call(
            f"ack in {self.name}",
            lambda: self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt),
        )

    def approximate_depth(self) -> int:
        """Messages visible plus in flight (SQS's approximate counters)."""
        attrs = self._call(
            f"depth of {self.name}",
            lambda: self.sqs.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            ),
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
