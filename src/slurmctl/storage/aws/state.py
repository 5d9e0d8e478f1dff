"""``DynamoStateStore``: the StateStore contract on DynamoDB, with optimistic locking.

Each logical table (``jobs``, ``tasks``, ``limits``) is one DynamoDB table; the item layout and
indexes are in :mod:`.schema`. Every write is a ``PutItem`` with a ``ConditionExpression``:

* create:          ``attribute_not_exists(pk)``
* compare-and-set: ``ver = :expected``  (the new item carries ``ver = expected + 1``)

so a writer that lost the race gets ``ConditionalCheckFailedException`` → ConflictError, never a
lost update. Each write also stores a fresh write token ``wt``: if a write is retried after an
ambiguous network error and then fails its condition, the store reads the item back — when the
token is ours, the first attempt was applied and the call succeeds instead of reporting a
conflict (which would make ``update()`` apply the change twice).

Reads are strongly consistent (``ConsistentRead``), which compare-and-set needs. The GSIs are
eventually consistent and serve only listings (:meth:`DynamoStateStore.query_state`).
"""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

from slurmctl.errors import ConflictError, StorageError
from slurmctl.storage.aws.retry import Attempt, call, error_code
from slurmctl.storage.aws.schema import STATE_TABLES
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter, make_client
from slurmctl.storage.base import Record, StateStore


def split_key(key: str) -> tuple[str, str]:
    """(pk, sk) of a record key: ``"job/t1"`` → ``("job", "/t1")``; ``"job"`` → ``("job", ".")``."""
    if not key or key.startswith("/") or key.endswith("/") or "//" in key:
        raise StorageError(f"invalid state key {key!r}")
    head, sep, rest = key.partition("/")
    return (head, "/" + rest) if sep else (head, ".")


class DynamoStateStore(StateStore):
    def __init__(
        self, settings: AwsSettings, *, client: Any = None, counter: RequestCounter | None = None
    ) -> None:
        self.settings = settings
        self.counter = counter or RequestCounter()
        self.ddb = client or make_client(settings, "dynamodb", self.counter)
        # The last record this process read or wrote per key (bounded LRU): update() tries a
        # compare-and-set against it first and skips the GetItem when nobody wrote in between.
        self._seen: collections.OrderedDict[tuple[str, str], Record] = collections.OrderedDict()
        self._seen_lock = threading.Lock()
        self.seen_limit = 4096

    # -- helpers ----------------------------------------------------------------------------
    def _table(self, table: str) -> str:
        if table not in STATE_TABLES:
            raise StorageError(
                f"state table {table!r} is not provisioned on the aws backend "
                f"(known: {', '.join(STATE_TABLES)})",
                hint="add it to slurmctl.storage.aws.schema.STATE_TABLES and infra/terraform, then re-run "
                "`slurmctl aws bootstrap`",
            )
        return self.settings.table_name(table)

    def _call(self, what: str, fn: Any, attempt: Attempt | None = None) -> Any:
        try:
            return call(fn, what=what, deadline_s=self.settings.retry_deadline_s, attempt=attempt)
        except StorageError:
            raise
        except Exception as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise
            if code == "ResourceNotFoundException":
                raise StorageError(
                    f"{what}: DynamoDB table missing ({exc})",
                    hint="run `slurmctl aws bootstrap` (or apply infra/terraform) for this prefix and region",
                ) from exc
            if code in ("AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException"):
                raise StorageError(
                    f"{what}: access denied by DynamoDB ({code})",
                    hint="check the AWS credentials/role of this node (aws sts get-caller-identity)",
                ) from exc
            if code == "ValidationException":
                raise StorageError(f"{what}: rejected by DynamoDB: {exc}") from exc
            raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _item(key: str, version: int, value: dict[str, Any], token: str) -> dict[str, Any]:
        pk, sk = split_key(key)
        item: dict[str, Any] = {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "k": {"S": key},
            "ver": {"N": str(version)},
            "v": {"S": json.dumps(value, separators=(",", ":"), sort_keys=True)},
            "wt": {"S": token},
        }
        state = value.get("state")
        if isinstance(state, str) and state:
            item["state"] = {"S": state}  # sparse GSI attribute
        return item

    @staticmethod
    def _record(item: dict[str, Any]) -> Record:
        try:
            return Record(item["k"]["S"], int(item["ver"]["N"]), json.loads(item["v"]["S"]))
        except (KeyError, ValueError) as exc:
            raise StorageError(f"malformed state item {item.get('k')}: {exc}") from exc

    def _get_item(self, name: str, key: str) -> dict[str, Any] | None:
        pk, sk = split_key(key)
        resp = self._call(
            f"get {name}/{key}",
            lambda: self.ddb.get_item(
                TableName=name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            ),
        )
        return resp.get("Item")

    def _conditional_put(
        self, name: str, key: str, item: dict[str, Any], condition: str, values: dict[str, Any] | None
    ) -> None:
        """PutItem under ``condition``. Raises ConflictError if the condition fails and the item
        is not the product of our own (ambiguously failed) earlier attempt."""
        kwargs: dict[str, Any] = {"TableName": name, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        attempt = Attempt()
        try:
            self._call(f"write {name}/{key}", lambda: self.ddb.put_item(**kwargs), attempt)
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            if attempt.ambiguous:
                current = self._get_item(name, key)
                if current is not None and current.get("wt", {}).get("S") == item["wt"]["S"]:
                    return
            raise ConflictError(f"{name}/{key}", "version changed (or record exists)") from None

    # -- contract ---------------------------------------------------------------------------
    def _remember(self, table: str, rec: Record | None, key: str) -> None:
        with self._seen_lock:
            if rec is None:
                self._seen.pop((table, key), None)
                return
            self._seen[(table, key)] = rec
            self._seen.move_to_end((table, key))
            while len(self._seen) > self.seen_limit:
                self._seen.popitem(last=False)

    def get(self, table: str, key: str) -> Record | None:
        item = self._get_item(self._table(table), key)
        rec = None if item is None else self._record(item)
        self._remember(table, rec, key)
        return rec

    def create(self, table: str, key: str, value: dict[str, Any]) -> Record:
        name = self._table(table)
        item = self._item(key, 1, value, uuid.uuid4().hex)
        try:
            self._conditional_put(name, key, item, "attribute_not_exists(pk)", None)
        except ConflictError:
            raise ConflictError(f"{table}/{key}", "record already exists") from None
        rec = Record(key, 1, value)
        self._remember(table, rec, key)
        return rec

    def compare_and_set(self, table: str, key: str, value: dict[str, Any], expected_version: int) -> Record:
        name = self._table(table)
        item = self._item(key, expected_version + 1, value, uuid.uuid4().hex)
        try:
            self._conditional_put(name, key, item, "ver = :e", {":e": {"N": str(expected_version)}})
        except ConflictError:
            self._remember(table, None, key)
            raise ConflictError(f"{table}/{key}", f"version is no longer {expected_version}") from None
        rec = Record(key, expected_version + 1, value)
        self._remember(table, rec, key)
        return rec

    def update(
        self,
        table: str,
        key: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        attempts: int = 50,
    ) -> Record | None:
        """As StateStore.update, but first tries one compare-and-set against the record this
        process last saw, saving the GetItem. Same semantics: that write succeeds only if the
        cached version is still current — i.e. ``change`` saw the current value. If the cache is
        stale (conflict), or ``change`` declines or raises on the cached value, it falls back to
        the read-modify-write loop on a fresh read, whose answer is the one that counts."""
        with self._seen_lock:
            cached = self._seen.get((table, key))
        if cached is not None:
            try:
                new = change(json.loads(json.dumps(cached.value)))
            except Exception:
                new = None  # maybe an artefact of a stale cache: decide on fresh data below
            if new is not None:
                try:
                    return self.compare_and_set(table, key, new, cached.version)
                except ConflictError:
                    pass
        return super().update(table, key, change, attempts=attempts)

    def _paged(self, what: str, op: Any, kwargs: dict[str, Any]) -> list[Record]:
        records: list[Record] = []
        while True:
            page = self._call(what, lambda kwargs=kwargs: op(**kwargs))
            records.extend(self._record(item) for item in page.get("Items", ()))
            last = page.get("LastEvaluatedKey")
            if not last:
                return records
            kwargs = {**kwargs, "ExclusiveStartKey": last}

    def scan(self, table: str, prefix: str = "") -> list[Record]:
        name = self._table(table)
        if "/" in prefix:
            # One partition: a Query, cheap however many jobs the table holds.
            head, _, rest = prefix.partition("/")
            kwargs: dict[str, Any] = {
                "TableName": name,
                "ConsistentRead": True,
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                "ExpressionAttributeValues": {":p": {"S": head}, ":s": {"S": "/" + rest}},
            }
            records = self._paged(f"query {name}/{prefix}", self.ddb.query, kwargs)
        else:
            # No "/" in the prefix: the keys span partitions, so this is a (filtered) Scan.
            kwargs = {"TableName": name, "ConsistentRead": True}
            if prefix:
                kwargs["FilterExpression"] = "begins_with(k, :p)"
                kwargs["ExpressionAttributeValues"] = {":p": {"S": prefix}}
            records = self._paged(f"scan {name}/{prefix}*", self.ddb.scan, kwargs)
        records.sort(key=lambda r: r.key)
        return records

    def delete(self, table: str, key: str) -> None:
        self._remember(table, None, key)
        name = self._table(table)
        pk, sk = split_key(key)
        self._call(
            f"delete {name}/{key}",
            lambda: self.ddb.delete_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": sk}}),
        )

    # -- extras (not in the contract) --------------------------------------------------------
    def query_state(self, table: str, state: str, job: str | None = None) -> list[Record]:
        """Records whose value has ``state == state`` — across all jobs, or of one job (the
        first key segment). Uses the GSIs, so it is eventually consistent: a record written a
        moment ago may be missing. Returns records sorted by key."""
        name = self._table(table)
        if job is None:
            kwargs: dict[str, Any] = {
                "TableName": name,
                "IndexName": "by_state",
                "KeyConditionExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":s": {"S": state}},
            }
        else:
            kwargs = {
                "TableName": name,
                "IndexName": "job_state",
                "KeyConditionExpression": "pk = :p AND #s = :s",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":p": {"S": job}, ":s": {"S": state}},
            }
        records = self._paged(f"query {name} state={state}", self.ddb.query, kwargs)
        records.sort(key=lambda r: r.key)
        return records
