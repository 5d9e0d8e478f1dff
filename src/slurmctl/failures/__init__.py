"""Failures: how each is classified (classify.py, the one table), what makes two of them the same
(signature.py), and ``slurmctl analyze-errors`` (analyze.py; its typer command in command.py)."""
