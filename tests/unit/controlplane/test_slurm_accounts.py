"""Slurm account sync without a cluster: parsing recorded ``sacctmgr show assoc`` output, the plan
(only differences, parents first), and import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurmctl.controlplane.domain import ResearchProject, ResourceAllocation, Role
from slurmctl.controlplane.slurm_accounts import (
    Association,
    format_tres,
    parse_associations,
    parse_tres,
    plan_import,
    plan_sync,
)
from slurmctl.errors import ConfigError

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "sacctmgr" / "show_assoc.txt"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def assocs() -> list[Association]:
    return parse_associations(GOLDEN.read_text())


def lab(**kw) -> ResearchProject:
    data = dict(name="lab", pi="alice", members={"bob": "member"}, parent_account="chem")
    return ResearchProject.build(**{**data, **kw})


def alloc(**kw) -> ResourceAllocation:
    data = dict(cluster="dev", cpu_hours=10, gpu_hours=1, period_start=NOW - timedelta(days=1))
    data["period_end"] = NOW + timedelta(days=30)
    return ResourceAllocation.build(**{**data, **kw})


def test_parse():
    rows = assocs()
    assert rows[3] == Association("dev", "lab", "", "", "chem", {"cpu": 600, "gres/gpu": 60})
    assert rows[6].partition == "gpu"
    assert parse_tres("") == {} and format_tres({"mem": 1, "cpu": 2}) == "cpu=2,mem=1"
    with pytest.raises(ConfigError, match="expected 6 fields"):
        parse_associations("dev|lab|alice\n")


def test_in_sync_plans_nothing():
    # mallory is associated too: she is a member here; allocations give exactly the current limit.
    p = lab(members={"bob": "member", "mallory": "member"}, allocations=[alloc()])
    assert plan_sync([p], assocs(), "dev", NOW) == []


def test_only_differences():
    p = lab(members={"bob": "viewer", "dan": "member", "erin": "owner"}, allocations=[alloc(cpu_hours=20)])
    changes = plan_sync([p], assocs(), "dev", NOW)
    assert [c.args for c in changes] == [
        ("modify", "account", "where", "name=lab", "cluster=dev", "set", "GrpTRESMins=cpu=1200,gres/gpu=60"),
        ("add", "user", "name=dan,erin", "account=lab", "cluster=dev"),
        ("delete", "user", "name=bob,mallory", "account=lab", "cluster=dev"),  # viewer: no association
    ]
    assert changes[0].summary == "account lab: GrpTRESMins cpu=600,gres/gpu=60 → cpu=1200,gres/gpu=60"
    assert changes[1].argv()[:2] == ["sacctmgr", "-i"]


def test_expired_allocations_clear_the_limit_and_no_allocations_leave_it():
    expired = alloc(period_start=NOW - timedelta(days=60), period_end=NOW - timedelta(days=30))
    members = {"bob": "member", "mallory": "member"}
    (change,) = plan_sync([lab(members=members, allocations=[expired])], assocs(), "dev", NOW)
    assert change.args[-1] == "GrpTRESMins=cpu=-1,gres/gpu=-1"
    assert plan_sync([lab(members=members)], assocs(), "dev", NOW) == []


def test_new_accounts_parents_first_with_limits():
    child = ResearchProject.build(name="sub", pi="zed", parent_account="newdept")
    parent = ResearchProject.build(
        name="newdept", pi="zed", title="New dept", allocations=[alloc(gpu_hours=0)]
    )
    changes = plan_sync([child, parent], assocs(), "dev", NOW)
    assert [c.args for c in changes] == [
        (
            "add",
            "account",
            "newdept",
            "cluster=dev",
            "parent=root",
            "description=New dept",
            "GrpTRESMins=cpu=600",
        ),
        ("add", "user", "name=zed", "account=newdept", "cluster=dev"),
        ("add", "account", "sub", "cluster=dev", "parent=newdept", "description=sub"),
        ("add", "user", "name=zed", "account=sub", "cluster=dev"),
    ]


def test_parent_change():
    p = lab(members={"bob": "member", "mallory": "member"}, parent_account="root")
    (change,) = plan_sync([p], assocs(), "dev", NOW)
    assert change.args == ("modify", "account", "where", "name=lab", "cluster=dev", "set", "parent=root")


def test_unknown_parent_and_cycles_are_refused_before_any_change():
    with pytest.raises(ConfigError, match="nowhere: neither a project nor a Slurm account on dev"):
        plan_sync([lab(parent_account="nowhere")], assocs(), "dev", NOW)
    a = ResearchProject.build(name="a1", pi="x", parent_account="b1")
    b = ResearchProject.build(name="b1", pi="x", parent_account="a1")
    with pytest.raises(ConfigError, match="cycle: a1 → b1 → a1"):
        plan_sync([a, b], assocs(), "dev", NOW)


def test_other_cluster_is_separate():
    changes = plan_sync([lab(parent_account="root")], assocs(), "other", NOW)
    assert [c.args[:3] for c in changes] == [("add", "user", "name=bob")]


def test_import():
    projects, skipped = plan_import(assocs(), "dev", known=["bio"])
    assert [(p.name, p.pi, dict(p.members), p.parent_account) for p in projects] == [
        ("lab", "alice", {"alice": Role.OWNER, "bob": Role.MEMBER, "mallory": Role.MEMBER}, "chem"),
    ]
    reasons = {s.account: s.reason for s in skipped}
    assert sorted(reasons) == ["chem", "we.ird"]
    assert reasons["chem"].startswith("no users")
    assert reasons["we.ird"].startswith("must be a Slurm account name")
    # An imported project is in sync by construction: the next sync changes nothing.
    assert plan_sync(projects, assocs(), "dev", NOW) == []
