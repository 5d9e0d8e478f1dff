"""The control plane's domain model, without a database: names, roles, allocations, job states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from slurmctl.controlplane.domain import (
    TRANSITIONS,
    Job,
    JobKind,
    JobState,
    ResearchProject,
    ResourceAllocation,
    Role,
    WorkflowRun,
)
from slurmctl.errors import ConfigError, StateError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def alloc(**kw):
    base = dict(cluster="dev", cpu_hours=100, period_start=T0, period_end=T0 + timedelta(days=365))
    return ResourceAllocation.build(**{**base, **kw})


@pytest.mark.parametrize("name", ["a", "chem-lab", "proj_2026", "x" * 64])
def test_valid_project_names(name):
    p = ResearchProject.build(name=name, pi="alice")
    assert p.slurm_account == name
    assert p.parent_account == "root"


@pytest.mark.parametrize(
    "name",
    # Each of these sacctmgr 22.05 would accept but rewrite (case, quotes, commas split, 255-byte cut)
    # or that cannot be typed safely after `sbatch -A`.
    ["", "Chem", "1lab", "_lab", "lab.x", "lab x", "lab,x", "lab'x", "x" * 65, "lab/x", "läb"],
)
def test_invalid_project_names(name):
    with pytest.raises(ConfigError, match="name: must be a Slurm account name"):
        ResearchProject.build(name=name, pi="alice")


def test_pi_is_owner_and_members_sorted():
    p = ResearchProject.build(name="lab", pi="alice", members={"zed": "viewer", "bob": Role.MEMBER})
    assert p.members == {"alice": Role.OWNER, "bob": Role.MEMBER, "zed": Role.VIEWER}
    assert list(p.members) == ["alice", "bob", "zed"]
    assert p.submitters() == ["alice", "bob"]


def test_pi_cannot_be_demoted_or_removed():
    p = ResearchProject.build(name="lab", pi="alice")
    with pytest.raises(ConfigError, match="PI 'alice' must be an owner"):
        p.with_member("alice", "viewer")
    with pytest.raises(ConfigError, match="is the PI"):
        p.without_member("alice")
    with pytest.raises(StateError, match="not a member"):
        p.without_member("bob")


def test_admin_is_not_a_project_role():
    p = ResearchProject.build(name="lab", pi="alice")
    with pytest.raises(ConfigError, match="site-wide"):
        p.with_member("bob", "admin")


def test_bad_role_and_bad_user_are_config_errors():
    p = ResearchProject.build(name="lab", pi="alice")
    with pytest.raises(ValueError):
        p.with_member("bob", "superuser")
    with pytest.raises(ConfigError, match="Unix user name"):
        p.with_member("Bob Smith", "member")


def test_member_changes_return_new_entities():
    p = ResearchProject.build(name="lab", pi="alice")
    q = p.with_member("bob", "member")
    assert "bob" not in p.members and q.members["bob"] == Role.MEMBER
    assert "bob" not in q.without_member("bob").members
    with pytest.raises(ValidationError, match="frozen"):
        p.name = "other"  # type: ignore[misc]


def test_parent_cannot_be_self():
    with pytest.raises(ConfigError, match="parent account cannot be"):
        ResearchProject.build(name="lab", pi="alice", parent_account="lab")


def test_unknown_field_rejected():
    with pytest.raises(ConfigError, match="budget"):
        ResearchProject.build(name="lab", pi="alice", budget=3)


def test_every_bad_field_reported_at_once():
    with pytest.raises(ConfigError) as info:
        ResearchProject.build(name="Lab", pi="Alice Smith")
    assert "name:" in str(info.value) and "pi:" in str(info.value)


def test_allocation_invariants():
    assert alloc().tres_minutes() == {"cpu": 6000}
    with pytest.raises(ConfigError, match="period_end"):
        alloc(period_end=T0)
    with pytest.raises(ConfigError, match="period_end"):
        alloc(period_end=T0 - timedelta(seconds=1))
    with pytest.raises(ConfigError, match="greater than or equal to 0"):
        alloc(cpu_hours=-1)
    with pytest.raises(ConfigError, match="grants something"):
        alloc(cpu_hours=0)
    with pytest.raises(ConfigError, match="finite"):
        alloc(gpu_hours=float("inf"))
    with pytest.raises(ConfigError, match="timezone-aware"):
        alloc(period_start=datetime(2026, 1, 1))
    # A grant Slurm's 64-bit TRES minutes cannot hold is refused before it is stored.
    with pytest.raises(ConfigError, match="less than or equal"):
        alloc(cpu_hours=1e307)
    assert alloc(mem_gb_hours=1e12).tres_minutes()["mem"] > 0


def test_allocation_tres_minutes_units():
    a = alloc(cpu_hours=1.5, gpu_hours=2, mem_gb_hours=1)
    assert a.tres_minutes() == {"cpu": 90, "gres/gpu": 120, "mem": 61440}


def test_grp_tres_mins_sums_active_whole_cluster_allocations():
    now = T0 + timedelta(days=10)
    p = ResearchProject.build(
        name="lab",
        pi="alice",
        allocations=[
            alloc(cpu_hours=10),
            alloc(cpu_hours=5, gpu_hours=1),
            alloc(cpu_hours=1000, partition="gpu"),  # partition-only: not an account limit
            alloc(cpu_hours=7, period_start=T0 - timedelta(days=400), period_end=T0),  # expired
            alloc(cpu_hours=9, cluster="other"),
        ],
    )
    assert p.grp_tres_mins("dev", now) == {"cpu": 900, "gres/gpu": 60}
    assert p.grp_tres_mins("other", now) == {"cpu": 540}
    assert p.grp_tres_mins("dev", T0 - timedelta(days=1)) == {"cpu": 420}  # only the older one is active
    assert p.grp_tres_mins("dev", T0 + timedelta(days=400)) == {}  # all expired: the limit is cleared
    assert p.grp_tres_mins("nowhere", now) is None


def job(**kw):
    base = dict(
        id="j1", kind=JobKind.SBATCH, submitted_by="alice", project="lab", cluster="dev", created_at=T0
    )
    return Job.build(**{**base, **kw})


def test_job_happy_path_sets_timestamps():
    j = job(idempotency_key="k1")
    s = j.advance("submitted", at=T0 + timedelta(seconds=1), slurm_job_ids=("42",))
    r = s.advance("running", at=T0 + timedelta(seconds=2))
    c = r.advance("completed", at=T0 + timedelta(seconds=3))
    assert (c.submitted_at, c.started_at, c.ended_at) == tuple(T0 + timedelta(seconds=i) for i in (1, 2, 3))
    assert c.slurm_job_ids == ("42",) and c.state.terminal


def test_requeue_goes_back_to_submitted_and_keeps_first_start():
    r = job().advance("submitted", at=T0, slurm_job_ids=("42",)).advance("running", at=T0)
    again = r.advance("submitted", at=T0 + timedelta(minutes=1))
    assert again.state == JobState.SUBMITTED and again.started_at == T0


def test_submitted_needs_slurm_ids():
    with pytest.raises(ConfigError, match="Slurm job ids"):
        job().advance("submitted")


def test_failed_before_sbatch_needs_no_ids():
    f = job().advance("failed", at=T0 + timedelta(seconds=1))
    assert f.slurm_job_ids == () and f.ended_at is not None


@pytest.mark.parametrize("source", list(JobState))
@pytest.mark.parametrize("target", list(JobState))
def test_transition_table_is_enforced(source, target):
    ids = () if source == JobState.ACCEPTED else ("7",)
    data = dict(state=source, slurm_job_ids=ids)
    if source != JobState.ACCEPTED:
        data["submitted_at"] = T0
    if source.terminal:
        data["ended_at"] = T0
    j = job(**data)
    if target in TRANSITIONS[source]:
        assert j.advance(target, at=T0 + timedelta(seconds=5), slurm_job_ids=("7",)).state == target
    else:
        with pytest.raises(StateError, match="cannot go from"):
            j.advance(target, at=T0 + timedelta(seconds=5), slurm_job_ids=("7",))


def test_job_invariants():
    with pytest.raises(ConfigError, match="ordered"):
        job().advance("submitted", at=T0 - timedelta(seconds=1), slurm_job_ids=("1",))
    with pytest.raises(ConfigError, match="ended_at is set exactly"):
        job(ended_at=T0)
    with pytest.raises(ConfigError, match="is a number"):
        job(state="submitted", submitted_at=T0, slurm_job_ids=("12_3",))
    with pytest.raises(ConfigError, match="backend"):
        job(backend="kubernetes")
    with pytest.raises(ConfigError, match="project"):
        job(project="Not A Project")


def test_workflow_run_minimal():
    run = WorkflowRun.build(id="r1", project="lab", workflow="align", spec_sha256="0" * 64)
    assert run.state == "pending"
    with pytest.raises(ConfigError, match="spec_sha256"):
        WorkflowRun.build(id="r1", project="lab", workflow="align", spec_sha256="xyz")
