from pathlib import Path

import pytest

from slurmctl.config import config_json_schema, load_config
from slurmctl.errors import ConfigError, ConfigValidationError


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
name: demo
input: {path: data.jsonl}
handler: {function: "mod:handle"}
"""


def test_defaults_and_paths_made_absolute(tmp_path):
    cfg = load_config(write(tmp_path, "job.yaml", GOOD))
    assert cfg.batch.items == 1000
    assert cfg.executor.kind == "local"
    assert cfg.input.path == str(tmp_path / "data.jsonl")
    assert cfg.handler.python_path == [str(tmp_path)]


def test_json_job_file(tmp_path):
    p = write(
        tmp_path, "job.json", '{"name": "j", "input": {"path": "x.csv"}, "handler": {"function": "m:f"}}'
    )
    assert load_config(p).name == "j"


def test_unknown_field_reports_file_line_and_path(tmp_path):
    p = write(tmp_path, "job.yaml", GOOD + "resources:\n  cpu: 4\n")
    with pytest.raises(ConfigValidationError) as ei:
        load_config(p)
    (problem,) = ei.value.problems
    assert problem.path == "resources.cpu"
    assert problem.line == 6
    assert "unknown field" in problem.message
    assert f"{p}:6: resources.cpu" in str(ei.value)


def test_wrong_type_and_bad_handler_all_reported(tmp_path):
    text = "name: demo\ninput: {path: d}\nhandler: {function: nocolon}\nbatch: {items: many}\n"
    with pytest.raises(ConfigValidationError) as ei:
        load_config(write(tmp_path, "job.yaml", text))
    paths = {p.path: p for p in ei.value.problems}
    assert set(paths) == {"handler.function", "batch.items"}
    assert paths["batch.items"].found == "'many'"
    assert paths["handler.function"].line == 3


def test_missing_required_field(tmp_path):
    with pytest.raises(ConfigValidationError) as ei:
        load_config(write(tmp_path, "job.yaml", "name: demo\ninput: {path: d}\n"))
    assert [p.path for p in ei.value.problems] == ["handler"]


def test_malformed_yaml_has_line_number(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "job.yaml", "name: demo\ninput: [unclosed\n"))
    assert "job.yaml:3" in str(ei.value) or "job.yaml:2" in str(ei.value)


def test_empty_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, "a.yaml", ""))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "b.yaml", "- 1\n- 2\n"))


def test_extends_merges_and_reports_errors_in_parent(tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", "base.yaml", "resources: {cpus: 4, mem_gb: 8}\nbatch: {items: 50}\n")
    child = write(tmp_path, "job.yaml", GOOD + "extends: base/base.yaml\nresources: {cpus: 2}\n")
    cfg = load_config(child)
    assert (cfg.resources.cpus, cfg.resources.mem_gb, cfg.batch.items) == (2, 8.0, 50)
    write(tmp_path / "base", "base.yaml", "resources: {cpus: -1}\n")
    with pytest.raises(ConfigValidationError) as ei:
        load_config(write(tmp_path, "job2.yaml", GOOD + "extends: base/base.yaml\n"))
    assert ei.value.problems[0].file == str(tmp_path / "base" / "base.yaml")


def test_extends_cycle(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_schema_version_is_checked(tmp_path):
    with pytest.raises(ConfigValidationError) as ei:
        load_config(write(tmp_path, "job.yaml", GOOD + "schema_version: 2\n"))
    assert ei.value.problems[0].path == "schema_version"


def test_json_schema_lists_fields():
    schema = config_json_schema()
    for field in ("handler", "batch", "resources", "retry", "executor", "mem_gb"):
        assert field in schema
