"""Builds the partitioner's optional C extension; everything else is in pyproject.toml.

``optional=True``: without a C compiler or Python headers the build skips the extension and
slurmctl uses its pure-Python path (same results, slower; see docs/partitioning.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "slurmctl.partition._scan",
            ["src/slurmctl/partition/_scan.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
