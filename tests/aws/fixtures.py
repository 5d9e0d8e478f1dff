"""Pytest fixtures shared by tests/aws and tests/contract (each conftest loads this file by path).

Servers start once per test session (per directory) on free 127.0.0.1 ports and stop at the end.
Every test gets its own bucket and table prefix, so tests never see each other's data.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_servers() -> Any:
    name = "slurmctl_test_aws_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("servers.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


servers = _load_servers()


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    with servers.dummy_credentials():
        yield


@pytest.fixture(scope="session")
def moto(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = servers.start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed(aws_env: None, moto: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = servers.start_seaweed(tmp_path_factory.mktemp("seaweed"))
    # Backends without an explicit endpoint_url reach S3 on SeaweedFS and DynamoDB/SQS on moto
    # through boto3's per-service endpoint variables (children inherit them).
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS")
    }
    os.environ["AWS_ENDPOINT_URL_S3"] = server.url
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = moto.url
    os.environ["AWS_ENDPOINT_URL_SQS"] = moto.url
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def provision(spec: dict[str, Any], *, full_bucket: bool = True) -> dict[str, Any]:
    """Create the bucket and tables a spec names (via the bootstrap code under test)."""
    from slurmctl.storage.aws.bootstrap import ensure_bucket, ensure_tables
    from slurmctl.storage.aws.settings import AwsSettings, make_client

    settings = AwsSettings.from_spec(spec)
    if full_bucket:
        ensure_bucket(settings)
    else:  # SeaweedFS: bucket only (encryption/lifecycle APIs are AWS features)
        make_client(settings, "s3").create_bucket(Bucket=settings.bucket)
    ensure_tables(settings, wait_s=30)
    return spec


@pytest.fixture
def moto_spec(moto: Any) -> dict[str, Any]:
    """A provisioned aws backend spec on moto (S3 + DynamoDB)."""
    return provision(
        {
            "kind": "aws",
            "bucket": servers.unique("b-"),
            "table_prefix": servers.unique("t") + "-",
            "queue_prefix": servers.unique("q") + "-",
            "region": "us-east-1",
            "endpoint_url": moto.url,
            "multipart_threshold_mb": 5,
            "retry_deadline_s": 60.0,
        }
    )


@pytest.fixture
def seaweed_spec(seaweed: Any) -> dict[str, Any]:
    """A provisioned aws backend spec with S3 on SeaweedFS and DynamoDB on moto."""
    return provision(
        {
            "kind": "aws",
            "bucket": servers.unique("sw-"),
            "table_prefix": servers.unique("t") + "-",
            "queue_prefix": servers.unique("q") + "-",
            "region": "us-east-1",
            "multipart_threshold_mb": 5,
            "retry_deadline_s": 60.0,
            # SeaweedFS answers InternalError to SSE-S3 headers unless it has a KMS configured.
            "sse": None,
        },
        full_bucket=False,
    )
