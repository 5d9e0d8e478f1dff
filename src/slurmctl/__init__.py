"""slurmctl: map jobs over millions of records on Slurm, workflows, and usage scoreboards."""

__version__ = "0.1.0"
