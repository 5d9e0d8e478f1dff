"""First contact with the aws backend fails fast and creates nothing; workers keep their long
outage deadline, which the job file's ``backend.retry_deadline_s`` sets.

Every case runs against the real moto server (or a closed port on 127.0.0.1), through the real
CLI where the exit code and message are what a user sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmctl.errors import StorageError
from slurmctl.storage import keys

pytestmark = [pytest.mark.aws]

# The worker writes the spec it was started with into every row: what the workers really get.
HANDLER = """
import json, sys

def handle(record, ctx):
    spec = json.loads(sys.argv[sys.argv.index("--backend") + 1])
    return {"id": record["id"], "spec": spec}
"""


def block_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The job-file ``backend:`` block of a provisioned spec (tuning the fixture adds left out)."""
    return {k: spec[k] for k in ("kind", "bucket", "table_prefix", "region", "endpoint_url")}


def write_job(tmp: Path, backend: dict[str, Any], n: int = 20) -> Path:
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i}) + "\n")
    (tmp / "spy.py").write_text(HANDLER)
    job = {
        "name": "first-contact",
        "input": {"path": "in.jsonl"},
        "handler": {"function": "spy:handle"},
        "batch": {"items": 10},
        "executor": {"kind": "local", "max_parallel": 2},
        "backend": backend,
    }
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def cli(tmp: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    # The timeout only stops a hung test; 300 s of retries (the worker deadline) would exceed it.
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args],
        cwd=tmp,
        env={**os.environ, "SLURMCTL_ROOT": str(tmp / "root")},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def closed_port_url() -> str:
    from slurmctl_test_aws_servers import free_port  # loaded by fixtures.py

    return f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there


def test_put_to_missing_bucket_is_a_storage_error_naming_it(moto_spec: dict[str, Any]) -> None:
    from slurmctl_test_aws_servers import unique

    from slurmctl.storage.aws import AwsSettings, S3ObjectStore

    missing = unique("gone-")
    store = S3ObjectStore(AwsSettings.from_spec({**moto_spec, "bucket": missing}))
    with pytest.raises(StorageError, match=f"bucket '{missing}' does not exist") as info:
        store.put("jobs/x/job.json", b"{}")
    assert "slurmctl aws bootstrap" in str(info.value)


def test_submit_to_missing_bucket_exits_6_and_creates_no_job(
    moto_spec: dict[str, Any], tmp_path: Path
) -> None:
    from slurmctl_test_aws_servers import unique

    from slurmctl.storage.open import open_backend

    missing = unique("gone-")
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, {**block_of(moto_spec), "bucket": missing})))
    assert_clean_failure(proc, 6)
    assert missing in proc.stderr and "slurmctl aws bootstrap" in proc.stderr
    # Nothing created: no job record in DynamoDB (the tables exist), none under the local root.
    state = open_backend(block_of(moto_spec)).state
    assert state.scan(keys.JOBS_TABLE) == []
    assert state.scan(keys.TASKS_TABLE) == []
    assert not (tmp_path / "root" / "state").exists()
    assert not (tmp_path / "root" / "jobs").exists()


def test_status_on_missing_bucket_exits_6_naming_it(moto_spec: dict[str, Any], tmp_path: Path) -> None:
    from slurmctl_test_aws_servers import unique

    missing = unique("gone-")
    spec = json.dumps({**block_of(moto_spec), "bucket": missing})
    proc = cli(tmp_path, "status", "some-job", "--backend", spec)
    assert_clean_failure(proc, 6)
    assert missing in proc.stderr


def test_preflight_names_a_missing_table(moto_spec: dict[str, Any]) -> None:
    from slurmctl_test_aws_servers import unique

    from slurmctl.storage.open import open_backend

    prefix = unique("none") + "-"
    with pytest.raises(StorageError) as info:
        open_backend({**block_of(moto_spec), "table_prefix": prefix}, check=True)
    assert f"{prefix}jobs" in str(info.value) and "slurmctl aws bootstrap" in str(info.value)
    # Workers open without the check: no request is sent until they use the store.
    open_backend({**block_of(moto_spec), "table_prefix": prefix})


@pytest.mark.parametrize("region", ["eu west 1", "bad_region!", "-x"])
def test_malformed_region_is_a_config_error(moto_spec: dict[str, Any], tmp_path: Path, region: str) -> None:
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, {**block_of(moto_spec), "region": region})))
    assert_clean_failure(proc, 2)
    assert "backend.region" in proc.stderr and repr(region) in proc.stderr
    spec = json.dumps({**block_of(moto_spec), "region": region})
    status = cli(tmp_path, "status", "some-job", "--backend", spec)
    assert_clean_failure(status, 2)
    assert "backend.region" in status.stderr


def test_malformed_region_from_the_environment_is_a_config_error(
    moto_spec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = {k: v for k, v in block_of(moto_spec).items() if k != "region"}
    monkeypatch.setenv("AWS_REGION", "eu west 1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu west 1")
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, block)))
    assert_clean_failure(proc, 2)
    assert "'eu west 1'" in proc.stderr and "AWS_REGION" in proc.stderr


def test_submit_to_closed_port_fails_within_the_first_contact_deadline(
    moto_spec: dict[str, Any], tmp_path: Path
) -> None:
    from slurmctl.storage.aws.preflight import FIRST_CONTACT_DEADLINE_S

    url = closed_port_url()
    # A long worker deadline in the job file must not stretch the first contact.
    block = {**block_of(moto_spec), "endpoint_url": url, "retry_deadline_s": 600}
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, block)))
    assert_clean_failure(proc, 6)
    assert url in proc.stderr and block["bucket"] in proc.stderr
    assert f"within {FIRST_CONTACT_DEADLINE_S:g} s" in proc.stderr
    assert not (tmp_path / "root" / "state").exists()


def test_preflight_to_closed_port_gives_up_on_its_own_deadline(moto_spec: dict[str, Any]) -> None:
    from slurmctl.storage.aws import AwsSettings
    from slurmctl.storage.aws.preflight import FIRST_CONTACT_DEADLINE_S, preflight

    assert FIRST_CONTACT_DEADLINE_S <= 5
    settings = AwsSettings.from_spec(
        {**block_of(moto_spec), "endpoint_url": closed_port_url(), "retry_deadline_s": 600}
    )
    with pytest.raises(StorageError, match=r"within 0\.5 s") as info:
        preflight(settings, deadline_s=0.5)
    assert "S3" in str(info.value) and settings.bucket in str(info.value)
    assert "600" not in str(info.value)  # the worker deadline played no part


def test_retry_deadline_in_the_job_file_reaches_the_workers(
    moto_spec: dict[str, Any], tmp_path: Path
) -> None:
    from slurmctl.aggregate import aggregate as merge
    from slurmctl.coordinator import load_job
    from slurmctl.storage.open import open_backend

    block = {**block_of(moto_spec), "retry_deadline_s": 600}
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, block)), "--wait", timeout=300)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    backend = open_backend(block)
    assert load_job(backend, job_id).backend["retry_deadline_s"] == 600
    merge(backend, job_id, tmp_path / "out.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(20))
    assert {r["spec"]["retry_deadline_s"] for r in rows} == {600}


@pytest.mark.parametrize("value", [0, -5, 10**7, "soon"])
def test_bad_retry_deadline_is_refused(moto_spec: dict[str, Any], tmp_path: Path, value: Any) -> None:
    proc = cli(
        tmp_path, "submit", str(write_job(tmp_path, {**block_of(moto_spec), "retry_deadline_s": value}))
    )
    assert_clean_failure(proc, 2)
    assert "backend.retry_deadline_s" in proc.stderr
    spec = json.dumps({**block_of(moto_spec), "retry_deadline_s": value})
    status = cli(tmp_path, "status", "some-job", "--backend", spec)
    assert_clean_failure(status, 2)
    assert "backend.retry_deadline_s" in status.stderr


def test_retry_deadline_is_refused_on_the_local_backend(tmp_path: Path) -> None:
    proc = cli(tmp_path, "submit", str(write_job(tmp_path, {"kind": "local", "retry_deadline_s": 60})))
    assert_clean_failure(proc, 2)
    assert "backend.retry_deadline_s" in proc.stderr and "kind: aws" in proc.stderr
