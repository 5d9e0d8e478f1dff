"""A task's batch as a local file: a batch file from the object store, or a reference batch's bytes
copied out of the job's input file (see docs/partitioning.md, "Reference batches")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from slurmctl.errors import ChecksumMismatchError
from slurmctl.model.core import Batch

CHUNK = 1 << 20


class InputChangedError(ChecksumMismatchError):
    """A reference batch's bytes are gone or differ: its input file changed after the submission."""

    def __init__(self, batch: Batch, detail: str, actual: str = "") -> None:
        super().__init__(str(batch.ref_path), batch.sha256, actual or "(unreadable)")
        end = (batch.ref_offset or 0) + batch.bytes
        self.message = (
            f"batch {batch.batch_id} is bytes {batch.ref_offset}..{end} of the input file "
            f"{batch.ref_path}, which changed after the job was submitted: {detail}"
        )
        self.args = (self.message,)
        self.hint = (
            "restore the input as it was and resubmit the task, or submit the job again; set "
            "`input.staging: copy` to give a job its own copy of the input"
        )


def copy_reference(batch: Batch, dest: Path) -> None:
    """Copy a reference batch (``batch.bytes`` bytes at ``batch.ref_offset`` of ``batch.ref_path``) to
    ``dest``, checking their sha256 on the way: the task then reads a copy that cannot change under it.

    Raises: InputChangedError when the input is missing, shorter, or its bytes differ. Idempotent.
    """
    assert batch.ref_path is not None and batch.ref_offset is not None
    h = hashlib.sha256()
    try:
        fd = os.open(batch.ref_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputChangedError(batch, f"cannot open it ({exc.strerror})") from exc
    try:
        with open(dest, "wb") as out:
            pos, left = batch.ref_offset, batch.bytes
            while left:
                chunk = os.pread(fd, min(left, CHUNK), pos)
                if not chunk:
                    raise InputChangedError(batch, f"it ends at byte {pos}, {left} bytes short")
                h.update(chunk)
                out.write(chunk)
                pos += len(chunk)
                left -= len(chunk)
    finally:
        os.close(fd)
    actual = h.hexdigest()
    if actual != batch.sha256:
        raise InputChangedError(batch, "its bytes there have another sha256", actual)


def read_reference(batch: Batch) -> bytes:
    """A reference batch's bytes, sha256 checked (for a batch small enough to hold in memory: the
    retry planner reads the records of failed items from them). Raises InputChangedError."""
    assert batch.ref_path is not None and batch.ref_offset is not None
    try:
        with open(batch.ref_path, "rb") as f:
            f.seek(batch.ref_offset)
            data = f.read(batch.bytes)
    except OSError as exc:
        raise InputChangedError(batch, f"cannot read it ({exc.strerror})") from exc
    if len(data) != batch.bytes:
        raise InputChangedError(batch, f"it ends {batch.bytes - len(data)} bytes short")
    actual = hashlib.sha256(data).hexdigest()
    if actual != batch.sha256:
        raise InputChangedError(batch, "its bytes there have another sha256", actual)
    return data
