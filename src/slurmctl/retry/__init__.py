"""Item retries: the planner (plan.py, pure), its store side (store.py: retry manifests, retry
batches, task manifests; the lifecycle creates the retry tasks' records), the retry manifests as
workers read them (tasks.py), and ``slurmctl retry`` (command.py)."""
