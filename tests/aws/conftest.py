"""AWS-only tests: real moto / SeaweedFS servers on 127.0.0.1 (see fixtures.py, servers.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_name = "slurmctl_test_aws_fixtures"
if _name not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_name, Path(__file__).with_name("fixtures.py"))
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
