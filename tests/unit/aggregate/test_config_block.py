"""The job file's ``aggregate:`` block: defaults and clear messages for bad values."""

from __future__ import annotations

import pytest

from slurmctl.config import load_config
from slurmctl.errors import ConfigValidationError

GOOD = """
name: demo
input: {path: data.jsonl}
handler: {function: "mod:handle"}
"""


def test_defaults(tmp_path):
    (tmp_path / "job.yaml").write_text(GOOD)
    a = load_config(tmp_path / "job.yaml").aggregate
    assert (a.where, a.fan_in, a.processes, a.when, a.reduce) == ("local", 256, None, "manual", None)


def test_reduce_block(tmp_path):
    (tmp_path / "job.yaml").write_text(GOOD + "aggregate: {reduce: {function: 'wc:combine', key: [word]}}\n")
    r = load_config(tmp_path / "job.yaml").aggregate.reduce
    assert (r.function, r.key) == ("wc:combine", ["word"])


@pytest.mark.parametrize(
    ("block", "field", "says"),
    [
        ("{fan_in: 1}", "aggregate.fan_in", "greater than or equal to 2"),
        ("{processes: 0}", "aggregate.processes", "greater than or equal to 1"),
        ("{where: cloud}", "aggregate.where", "'local'"),
        ("{when: sometimes}", "aggregate.when", "'manual'"),
        ("{reduce: {function: combine, key: [w]}}", "aggregate.reduce.function", "module:function"),
        ("{reduce: {function: 'a:b', key: []}}", "aggregate.reduce.key", "at least 1"),
        ("{fanin: 8}", "aggregate.fanin", "unknown field"),
    ],
)
def test_bad_values_name_the_field(tmp_path, block, field, says):
    (tmp_path / "job.yaml").write_text(GOOD + f"aggregate: {block}\n")
    with pytest.raises(ConfigValidationError) as ei:
        load_config(tmp_path / "job.yaml")
    text = str(ei.value)
    assert f"job.yaml:5: {field}:" in text and says in text, text
