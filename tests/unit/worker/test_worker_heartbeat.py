"""A heartbeat that cannot renew the lease gives the task up: the worker stops without publishing
(another worker may take the task over as soon as the lease lapses), whatever the store raised."""

from __future__ import annotations

import errno
import json

import pytest

from slurmctl.errors import EXIT_LEASE_LOST, StorageError
from slurmctl.storage import keys
from slurmctl.storage.base import Backend
from slurmctl.storage.open import open_backend
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl, write_job

SLOW = "import time\ndef handle(record, ctx):\n    time.sleep(0.05)\n    return record\n"


class FailingUpdates:
    """The real state store, whose updates fail (as an NFS server gone stale would) once armed."""

    def __init__(self, inner, exc: BaseException) -> None:
        self.inner = inner
        self.exc = exc
        self.armed = False

    def update(self, *args, **kwargs):
        if self.armed:
            raise self.exc
        return self.inner.update(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "exc",
    [
        StorageError("cannot write state record: Stale file handle"),
        OSError(errno.ESTALE, "Stale file handle"),
    ],
    ids=["StorageError", "raw OSError"],
)
def test_a_heartbeat_that_cannot_renew_gives_the_task_up(tmp_path, monkeypatch, exc):
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    mod = "hb_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / f"{mod}.py").write_text(SLOW)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(60)))
    job = write_job(
        tmp_path,
        f"name: hb\ninput: {{path: in.jsonl}}\nhandler: {{function: '{mod}:handle'}}\nbatch: {{items: 60}}\n",
    )
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = open_backend({"kind": "local", "root": str(root)})
    store = FailingUpdates(backend.state, exc)
    failing = Backend(backend.objects, store, backend.description, backend.spec)  # type: ignore[arg-type]
    w = Worker(failing, job_id, lease_s=0.6, heartbeat_s=0.2)
    claim = w.lifecycle.claim

    def claim_then_arm(*args, **kwargs):
        got = claim(*args, **kwargs)
        store.armed = True  # every later write of this worker fails: renewals first
        return got

    w.lifecycle.claim = claim_then_arm  # type: ignore[method-assign]
    assert w.run_task("t0000000") == EXIT_LEASE_LOST  # 60 x 0.05 s outlasts the 0.6 s lease
    assert not backend.objects.exists(keys.done_marker(job_id, "t0000000"))
