"""Job ids are checked where every key of a job is built: one that is not one path segment is
refused (exit 2) before any read or delete; purge deletes only directories in ``<root>/jobs``."""

from __future__ import annotations

import pytest

from slurmctl import control
from slurmctl.errors import ConfigError, StateError
from slurmctl.storage import keys
from slurmctl.storage.local import local_backend
from tests.e2e.cli import slurmctl

BAD = ["", ".", "..", "a/b", "../x", "-j", "a\x00b", "a\nb", "a\\b"]


@pytest.mark.parametrize("job_id", BAD)
def test_bad_job_ids_are_refused(job_id):
    with pytest.raises(ConfigError, match="is not a job id"):
        keys.job_prefix(job_id)
    with pytest.raises(ConfigError, match="is not a job id"):
        keys.job_state(job_id)


def test_good_job_ids_pass():
    assert keys.job_state("t-20261207-212441-b12a") == "t-20261207-212441-b12a"


def test_purge_of_dot_dot_deletes_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    log = home / "jobs" / "other" / "logs" / "runner.log"
    log.parent.mkdir(parents=True)
    log.write_text("precious")
    monkeypatch.setenv("SLURMCTL_ROOT", str(home))
    b = local_backend(tmp_path / "store")
    with pytest.raises(ConfigError):
        control.plan_purge(b, "..")
    r = slurmctl("purge", "..", "--yes", root=home)
    assert r.code == 2 and "is not a job id" in r.err and "Traceback" not in r.err
    assert log.read_text() == "precious"


def test_purge_deletes_no_directory_outside_root_jobs(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root" / "jobs").mkdir(parents=True)
    (tmp_path / "root" / "jobs" / "j").symlink_to(outside)
    with pytest.raises(StateError, match="purge deletes nothing there"):
        control._job_dir(tmp_path / "root", "j")
    assert control._job_dir(tmp_path / "root", "k") == (tmp_path / "root" / "jobs" / "k").resolve()


def test_inspect_of_an_unknown_or_malformed_task_exits_5(tmp_path, monkeypatch):
    from tests.unit.retry.test_store import prepare

    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    root, job_id = prepare(tmp_path)
    for task_id in ("t9999999", "../job", "x"):
        r = slurmctl("inspect", job_id, task_id, root=root)
        assert r.code == 5 and "has no task" in r.err, (task_id, r.code, r.err)
