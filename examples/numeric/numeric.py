"""Example handler: a CPU-bound numeric kernel per Parquet row (a damped oscillator, Euler steps)."""

import math


def handle(record, ctx):
    x, v = record["x0"], record["v0"]
    k, c, dt = record["k"], record["damping"], 1e-3
    peak = abs(x)
    for _ in range(record["steps"]):
        a = -k * x - c * v
        v += a * dt
        x += v * dt
        peak = max(peak, abs(x))
    return {
        "sample": record["sample"],
        "x_final": x,
        "peak": peak,
        "energy": 0.5 * (k * x * x + v * v),
        "decay": math.log(peak + 1e-12),
    }
