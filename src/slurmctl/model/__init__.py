"""Job, task and manifest models and their state machines."""
