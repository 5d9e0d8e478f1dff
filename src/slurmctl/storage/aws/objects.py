"""``S3ObjectStore``: the ObjectStore contract on S3 (or any S3-compatible store).

* Every PUT is atomic on S3: a reader sees the old object or the whole new one.
* The sha256 of each object travels in its user metadata (``x-amz-meta-sha256``), so ``head`` is
  one cheap request; objects written by other tools (no metadata) are hashed by reading them.
* ``put_if_absent`` is a conditional PUT (``If-None-Match: *``): S3 answers 412 to every caller
  but the first. A retry after an ambiguous network error checks the write token in the metadata,
  so our own earlier success is not mistaken for a lost race.
* Large files go up in parts (``multipart_threshold_mb``); S3 assembles them atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from slurmctl.errors import ConflictError, ObjectNotFoundError, StorageError
from slurmctl.fsutil import CHUNK, atomic_writer, sha256_bytes, sha256_file
from slurmctl.storage.aws.retry import Attempt, call, error_code, http_status
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter, make_client
from slurmctl.storage.base import ObjectInfo, ObjectStore

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_PASS_THROUGH = _NOT_FOUND | {"PreconditionFailed", "ConditionalRequestConflict"}


def _check_key(key: str) -> str:
    # Same rules as the local backend, so a key valid on one backend is valid on the other.
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts[:-1])
        or parts[-1] in ("", "..")
    ):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class S3ObjectStore(ObjectStore):
    def __init__(
        self, settings: AwsSettings, *, client: Any = None, counter: RequestCounter | None = None
    ) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.counter = counter or RequestCounter()
        self.s3 = client or make_client(settings, "s3", self.counter)

    # -- helpers ----------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, attempt: Attempt | None = None) -> Any:
        try:
            return call(fn, what=what, deadline_s=self.settings.retry_deadline_s, attempt=attempt)
        except StorageError:
            raise
        except Exception as exc:
            code = error_code(exc)
            # Before the pass-through: NoSuchBucket is a 404 too, but no caller can treat a
            # missing bucket as a missing object.
            if code == "NoSuchBucket":
                raise StorageError(
                    f"S3 bucket {self.bucket!r} does not exist",
                    hint="run `slurmctl aws bootstrap --bucket ...` or apply infra/terraform",
                ) from exc
            if code in _PASS_THROUGH or http_status(exc) in (404, 409, 412):
                raise  # the caller turns these into ObjectNotFoundError / ConflictError
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                raise StorageError(
                    f"{what}: access denied by S3 ({code})",
                    hint="check the AWS credentials/role of this node (aws sts get-caller-identity)",
                ) from exc
            if error_code(exc) is not None:
                raise StorageError(f"{what}: S3 error {code}: {exc}") from exc
            raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _put_args(self, sha256: str, token: str | None = None) -> dict[str, Any]:
        meta = {"sha256": sha256}
        if token:
            meta["wt"] = token
        args: dict[str, Any] = {"Metadata": meta}
        if self.settings.sse:
            args["ServerSideEncryption"] = self.settings.sse
        return args

    # -- contract ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> ObjectInfo:
        _check_key(key)
        digest = sha256_bytes(data)
        args = self._put_args(digest)
        self._call(
            f"put s3://{self.bucket}/{key}",
            lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **args),
        )
        return ObjectInfo(key, len(data), digest)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        _check_key(key)
        from boto3.s3.transfer import TransferConfig

        try:
            size = Path(path).stat().st_size
            digest = sha256_file(path)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        threshold = self.settings.multipart_threshold_mb * 2**20
        # Parts of >= threshold/4 keep a 1 TB result under S3's 10,000-part limit at 64 MiB.
        config = TransferConfig(
            multipart_threshold=threshold,
            multipart_chunksize=max(8 * 2**20, threshold // 4),
            use_threads=True,
        )
        args = self._put_args(digest)
        self._call(
            f"upload {path} to s3://{self.bucket}/{key}",
            lambda: self.s3.upload_file(str(path), self.bucket, key, ExtraArgs=args, Config=config),
        )
        return ObjectInfo(key, size, digest)

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        _check_key(key)
        digest = sha256_bytes(data)
        token = uuid.uuid4().hex
        args = self._put_args(digest, token)
        attempt = Attempt()
        try:
            self._call(
                f"create s3://{self.bucket}/{key}",
                lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", **args),
                attempt,
            )
        except Exception as exc:
            if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict") or http_status(
                exc
            ) in (
                409,
                412,
            ):
                if attempt.ambiguous and self._written_by(key, token):
                    return ObjectInfo(key, len(data), digest)
                raise ConflictError(key, "already exists") from None
            raise
        return ObjectInfo(key, len(data), digest)

    def _written_by(self, key: str, token: str) -> bool:
        meta = self._head(key)
        return meta is not None and meta.get("Metadata", {}).get("wt") == token

    def get(self, key: str) -> bytes:
        _check_key(key)

        def fetch() -> bytes:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

        try:
            return self._call(f"get s3://{self.bucket}/{key}", fetch)
        except Exception as exc:
            if error_code(exc) in _NOT_FOUND:
                raise ObjectNotFoundError(key) from None
            raise

    def get_file(self, key: str, path: Path) -> ObjectInfo:
        _check_key(key)

        def fetch() -> ObjectInfo:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            h = hashlib.sha256()
            size = 0
            with atomic_writer(path, fsync=False) as out:
                for chunk in body.iter_chunks(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            return ObjectInfo(key, size, h.hexdigest())

        try:
            return self._call(f"download s3://{self.bucket}/{key} to {path}", fetch)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        except Exception as exc:
            if error_code(exc) in _NOT_FOUND:
                raise ObjectNotFoundError(key) from None
            raise

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call(
                f"head s3://{self.bucket}/{key}", lambda: self.s3.head_object(Bucket=self.bucket, Key=key)
            )
        except Exception as exc:
            if error_code(exc) in _NOT_FOUND or http_status(exc) == 404:
                return None
            raise

    def head(self, key: str) -> ObjectInfo | None:
        _check_key(key)
        meta = self._head(key)
        if meta is None:
            return None
        digest = meta.get("Metadata", {}).get("sha256")
        if not digest:  # written by another tool: hash it
            try:
                digest = sha256_bytes(self.get(key))
            except ObjectNotFoundError:
                return None
        return ObjectInfo(key, int(meta["ContentLength"]), digest)

    def exists(self, key: str) -> bool:
        _check_key(key)
        return self._head(key) is not None

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        # S3 lists keys in UTF-8 binary order, which for our ASCII keys is lexicographic order.
        keys: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(
                f"list s3://{self.bucket}/{prefix}", lambda kwargs=kwargs: self.s3.list_objects_v2(**kwargs)
            )
            keys.extend((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return iter(sorted(keys))

    def delete_versions(self, prefix: str, keep: Callable[[str], bool] = lambda key: False) -> int:
        """Delete every version and delete marker of the keys under ``prefix`` except those
        ``keep`` names (a versioned bucket keeps a deleted object as a noncurrent version: what
        ``slurmctl purge`` must not leave behind). Returns how many versions were deleted."""
        deleted = 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self._call(
                f"list versions s3://{self.bucket}/{prefix}",
                lambda kwargs=kwargs: self.s3.list_object_versions(**kwargs),
            )
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
                if not keep(v["Key"])
            ]
            for i in range(0, len(doomed), 1000):  # DeleteObjects takes 1,000 keys at most
                part = doomed[i : i + 1000]
                self._call(
                    f"delete versions s3://{self.bucket}/{prefix}",
                    lambda part=part: self.s3.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": part, "Quiet": True}
                    ),
                )
                deleted += len(part)
            if not page.get("IsTruncated"):
                return deleted
            kwargs = {
                **kwargs,
                "KeyMarker": page.get("NextKeyMarker"),
                "VersionIdMarker": page.get("NextVersionIdMarker"),
            }

    def delete(self, key: str) -> None:
        _check_key(key)
        with contextlib.suppress(ObjectNotFoundError):
            try:
                self._call(
                    f"delete s3://{self.bucket}/{key}",
                    lambda: self.s3.delete_object(Bucket=self.bucket, Key=key),
                )
            except Exception as exc:
                if error_code(exc) in _NOT_FOUND:
                    return
                raise
