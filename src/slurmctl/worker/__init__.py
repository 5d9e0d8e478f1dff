"""The worker: runs tasks of a job with item-level checkpoints."""
