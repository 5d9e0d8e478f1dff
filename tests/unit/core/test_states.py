import pytest

from slurmctl.errors import StateError
from slurmctl.model.core import Batch, Job, Task, TaskStatus
from slurmctl.model.states import JobState, TaskState, advance_job, advance_task


def test_legal_task_path():
    st = TaskStatus(task_id="t0")
    for s in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED):
        st = st.advance(s)
    assert st.state == TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (TaskState.SUCCEEDED, TaskState.RUNNING),
        (TaskState.PENDING, TaskState.SUCCEEDED),
        (TaskState.FAILED, TaskState.SUCCEEDED),
        (TaskState.CANCELLED, TaskState.RUNNING),
    ],
)
def test_illegal_task_transitions_raise(a, b):
    with pytest.raises(StateError, match=f"{a.value} -> {b.value}"):
        advance_task(a, b)


def test_job_transitions():
    assert advance_job(JobState.CREATED, JobState.PARTITIONED) == JobState.PARTITIONED
    with pytest.raises(StateError):
        advance_job(JobState.SUCCEEDED, JobState.RUNNING)
    with pytest.raises(StateError):
        advance_job(JobState.CREATED, JobState.RUNNING)


def test_models_round_trip_json():
    b = Batch(
        batch_id="b0000000",
        index=0,
        key="k",
        first_item=0,
        items=3,
        bytes=10,
        sha256="0" * 64,
        source="in.jsonl",
        first_line=1,
        last_line=3,
    )
    t = Task(task_id="t0000000", job_id="j", index=0, batch=b)
    assert Task.from_json(t.to_json()) == t
    j = Job(job_id="j", name="n", created_at=1.0, config={}, config_sha256="x", backend={}, executor="local")
    assert Job.from_json(j.to_json()) == j


def test_newer_schema_version_is_refused():
    doc = TaskStatus(task_id="t").model_dump(mode="json")
    doc["schema_version"] = 99
    import json

    with pytest.raises(StateError, match="upgrade slurmctl"):
        TaskStatus.from_json(json.dumps(doc))
