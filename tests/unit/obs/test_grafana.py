"""infra/grafana/slurmctl-job.json: every panel queries metrics that `slurmctl metrics` emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from slurmctl.obs.metrics import Custom, openmetrics, rollup

DASHBOARD = Path(__file__).resolve().parents[3] / "infra" / "grafana" / "slurmctl-job.json"
METRIC = re.compile(r"\bslurmctl_[a-z0-9_]+\b")


def emitted_sample_names() -> set[str]:
    """The sample names of a job whose summaries use every built-in field."""
    c = Custom()
    s = {
        "started": "2026-12-07T10:00:00.000Z",
        "ended": "2026-12-07T10:00:10.000Z",
        "wall_s": 10.0,
        "cpu_s": 5.0,
        "items_ok": 3,
        "items_failed": 1,
        "failed_by_category": {"transient": 1},
        "queue_wait_s": 2.0,
        "ratelimit": {"api": {"tokens": 3, "wait_s": 0.1}},
        "store": {"calls": 3, "seconds": 0.01},
        "custom": c.to_dict(),
    }
    text = openmetrics("j", rollup([s]), {"succeeded": 1})
    return {sample.name for f in text_string_to_metric_families(text) for sample in f.samples}


def test_every_panel_queries_emitted_metrics():
    dash = json.loads(DASHBOARD.read_text())
    emitted = emitted_sample_names()
    panels = dash["panels"]
    assert len(panels) >= 10
    used = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            names = set(METRIC.findall(expr))
            assert names, f"{panel['title']}: {expr} queries no slurmctl metric"
            missing = names - emitted
            assert not missing, f"{panel['title']}: {sorted(missing)} are not emitted"
            used |= names
    job_var = next(v for v in dash["templating"]["list"] if v["name"] == "job")
    assert set(METRIC.findall(job_var["definition"])) <= emitted
    assert "slurmctl_queue_wait_seconds_bucket" in used and "slurmctl_ratelimit_tokens_total" in used
