"""Alerts: rules evaluated on a job's records, state kept by compare-and-set so each condition is
sent once per channel, and channels (docs/alerts.md).

    config.py    the ``alerts:`` block (job file and the user's alert file)
    rules.py     the rules: a snapshot in, conditions out (pure)
    state.py     the alert record: fire, repeat, resolve, claims and deliveries (pure)
    channels.py  email, Slack-compatible and PagerDuty-compatible webhooks, a command
    evaluate.py  one look (snapshot, rules, record, send) and the loop the runner and watcher run
    command.py   ``slurmctl alerts check`` and ``slurmctl alerts list``

Nothing is imported here: the CLI imports ``command`` at start-up.
"""
