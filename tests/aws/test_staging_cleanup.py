"""On a remote backend `submit` partitions into a temporary directory under $TMPDIR and uploads the
batches; the directory is removed when the submission ends, whether it succeeded or failed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.errors import InputError
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend

pytestmark = pytest.mark.aws


def job_file(tmp_path: Path, spec: dict[str, Any], lines: list[str], max_rejects: int = 0) -> Path:
    (tmp_path / "in.jsonl").write_text("".join(line + "\n" for line in lines))
    job = {
        "name": "staging",
        "input": {"path": "in.jsonl", "max_rejects": max_rejects},
        "handler": {"function": "mod:handle"},
        "batch": {"items": 10},
        "executor": {"kind": "local"},
        "backend": {
            k: v for k, v in spec.items() if k in ("kind", "bucket", "table_prefix", "region", "endpoint_url")
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.fixture
def tmpdir_(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $TMPDIR (and tempfile's cached default) for the test."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def test_staging_dir_is_removed_after_submission(moto_spec, tmp_path, tmpdir_):
    records = [json.dumps({"id": i}) for i in range(35)]
    _, job = prepare(load_config(job_file(tmp_path, moto_spec, records)))
    assert job.tasks == 4
    assert list(tmpdir_.iterdir()) == []


def test_staging_dir_is_removed_after_a_failed_submission(moto_spec, tmp_path, tmpdir_):
    """Too many malformed records: the job fails, its rejects are kept in the store (the
    message says where), and nothing is left in $TMPDIR."""
    records = [json.dumps({"id": i}) for i in range(5)] + ["{not json"] * 3
    with pytest.raises(InputError, match="3 malformed record") as exc:
        prepare(load_config(job_file(tmp_path, moto_spec, records)))
    assert list(tmpdir_.iterdir()) == []
    backend = open_backend(moto_spec)
    [job_id] = [r.key for r in backend.state.scan(keys.JOBS_TABLE)]
    rejects = backend.objects.get(keys.rejects(job_id)).decode()
    assert rejects.count("\n") == 3
    assert keys.rejects(job_id) in str(exc.value)
