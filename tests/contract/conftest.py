"""The storage conformance suite runs every contract test once per backend: ``local`` (a temp
directory), ``moto`` (S3 + DynamoDB of moto's server mode) and, for objects, ``seaweedfs`` (S3
gateway of SeaweedFS, tables on moto). Servers start lazily: a ``-k local`` run needs none."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_name = "slurmctl_test_aws_fixtures"
if _name not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_name, Path(__file__).parents[1] / "aws" / "fixtures.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_name])
_fx = sys.modules[_name]
aws_env, moto, seaweed, moto_spec, seaweed_spec = (
    _fx.aws_env,
    _fx.moto,
    _fx.seaweed,
    _fx.moto_spec,
    _fx.seaweed_spec,
)


@pytest.fixture(
    params=[
        "local",
        pytest.param("moto", marks=pytest.mark.aws),
        pytest.param("seaweedfs", marks=pytest.mark.aws),
    ]
)
def object_spec(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        return {"kind": "local", "root": str(tmp_path / "root")}
    if request.param == "moto":
        return request.getfixturevalue("moto_spec")
    return request.getfixturevalue("seaweed_spec")


@pytest.fixture(params=["local", pytest.param("moto", marks=pytest.mark.aws)])
def state_spec(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        return {"kind": "local", "root": str(tmp_path / "root")}
    return request.getfixturevalue("moto_spec")


@pytest.fixture
def objects(object_spec: dict[str, Any]) -> Any:
    from slurmctl.storage.open import open_backend

    return open_backend(object_spec).objects


@pytest.fixture
def state(state_spec: dict[str, Any]) -> Any:
    from slurmctl.storage.open import open_backend

    return open_backend(state_spec).state
