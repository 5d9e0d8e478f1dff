"""Item-level retries: the planner (plan.py, pure) and its store side (store.py): retry
manifests, retry batches and task manifests; the lifecycle creates the retry tasks' records."""
