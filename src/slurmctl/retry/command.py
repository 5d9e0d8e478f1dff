"""The typer command ``slurmctl retry`` (registered by cli/main.py as
``app.command("retry")(retry)``): retries by hand, the plan printed first.

``--items`` (the default): the failed items of succeeded tasks, latest failure per item, go into
new retry tasks (slurmctl.retry.store; no attempt caps, no backoff). ``--tasks``: tasks that failed
as a whole and used up their attempts get a fresh budget and are submitted again. Permanent and
unknown failures only with ``--force``; ``--category`` selects one category (failures/classify.py).

Exit codes: 0 the plan was submitted (or printed, ``--dry-run``); 2 an unknown category; 5 an
unknown job, a paused job (``--dry-run`` still prints the plan), or nothing to retry (the message
says why: a running job's failures are retried automatically as its tasks finish).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from slurmctl.failures.classify import CATEGORIES

if TYPE_CHECKING:
    from slurmctl.storage.base import Backend


def retry(
    job_id: str,
    category: Annotated[
        str | None, typer.Option("--category", help=f"only failures of one category: {', '.join(CATEGORIES)}")
    ] = None,
    items: Annotated[bool, typer.Option("--items", help="retry failed items (the default)")] = False,
    tasks: Annotated[bool, typer.Option("--tasks", help="retry tasks that failed as a whole")] = False,
    force: Annotated[bool, typer.Option("--force", help="include permanent and unknown failures")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, change nothing")] = False,
    root: Annotated[
        str | None,
        typer.Option("--root", envvar="SLURMCTL_ROOT", help="local backend root (default ~/.slurmctl)"),
    ] = None,
    backend_spec: Annotated[
        str | None, typer.Option("--backend", help="backend block as JSON (default: local)")
    ] = None,
) -> None:
    """Retry a job's failed items (or --tasks: failed tasks) by hand; prints the plan first."""
    from slurmctl.cli.common import open_backend_of
    from slurmctl.errors import ConfigError
    from slurmctl.failures.analyze import check_category

    check_category(category)
    if items and tasks:
        raise ConfigError("--items and --tasks exclude each other")
    backend = open_backend_of(root, backend_spec)
    run = retry_tasks if tasks else retry_items
    for line in run(backend, job_id, category=category, force=force, dry_run=dry_run):
        print(line)


def _nothing(job_id: str, state: str, what: str) -> Exception:
    from slurmctl.errors import StateError

    if state in ("submitted", "running"):
        hint = "the job is running: failed items are retried automatically as their tasks finish"
    else:
        hint = "`slurmctl analyze-errors " + job_id + "` shows its failures; --force includes permanent ones"
    return StateError(f"job {job_id} ({state}): nothing to retry: {what}", hint=hint)


def retry_items(
    backend: Backend, job_id: str, *, category: str | None, force: bool, dry_run: bool
) -> Iterator[str]:
    """Plan (and unless ``dry_run`` record and submit) the retry of the job's failed items. Yields
    the lines to print. Raises StateError if there is nothing to retry."""
    from slurmctl.coordinator import load_job
    from slurmctl.lifecycle import job_status
    from slurmctl.retry.store import plan_retries

    status = job_status(backend, job_id)  # JobNotFoundError (5) first
    state = status.state.value
    if not dry_run:
        from slurmctl.control import refuse_if_paused

        refuse_if_paused(status, "retried")
    cats = [category] if category else None
    p, _ = plan_retries(backend, job_id, by_hand=True, categories=cats, force=force, dry_run=True)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(p.skipped.items()))
    if not p.tasks:
        why = "no failed item is selected" + (f" (not retried: {skipped})" if skipped else "")
        raise _nothing(job_id, state, why)
    yield f"job {job_id}: retry {p.items} item(s) in {len(p.tasks)} task(s)"
    for cause, n in sorted(p.causes.items(), key=lambda kv: -kv[1]):
        yield f"  {n:>8}  {cause}"
    if skipped:
        yield f"  not retried: {skipped}"
    if dry_run:
        yield "dry run: nothing changed"
        return
    p, doc = plan_retries(backend, job_id, by_hand=True, categories=cats, force=force)
    if doc is None or not doc.task_ids:
        raise _nothing(job_id, state, "the failures changed while planning; run it again")
    from slurmctl.executors import executor_for

    detail = executor_for(backend, load_job(backend, job_id)).submit(doc.task_ids)
    yield f"retry manifest {doc.number}: tasks {doc.task_ids[0]}..{doc.task_ids[-1]} submitted: {detail}"


def retry_tasks(
    backend: Backend, job_id: str, *, category: str | None, force: bool, dry_run: bool
) -> Iterator[str]:
    """Give the tasks that failed as a whole (attempts used up) and match ``category`` a fresh
    budget and submit them again. Yields the lines to print."""
    from slurmctl.coordinator import load_job
    from slurmctl.failures.classify import classify_task
    from slurmctl.lifecycle import Lifecycle, attempts_left, job_status, task_statuses
    from slurmctl.model.core import TaskStatus
    from slurmctl.model.states import TaskState
    from slurmctl.retry.plan import RETRYABLE

    status = job_status(backend, job_id)
    state = status.state.value
    if not dry_run:
        from slurmctl.control import refuse_if_paused

        refuse_if_paused(status, "retried")
    job = load_job(backend, job_id)
    lc = Lifecycle.of(backend, job_id, job.config)
    allowed = {category} if category else (set(CATEGORIES) if force else set(RETRYABLE))
    if not force:
        allowed &= set(RETRYABLE)

    def chosen(st: TaskStatus) -> bool:
        return classify_task(st.error, st.exit_code, st.cause, st.slurm_state).category in allowed

    sts = task_statuses(backend, job_id) if dry_run else lc.tasks()  # a dry run reads only
    final = [t for t in sts if t.state == TaskState.FAILED and not attempts_left(t, lc.max_attempts)]
    picked = [t for t in final if chosen(t)]
    if not picked:
        what = f"no task failed as a whole in {', '.join(sorted(allowed)) or 'the chosen categories'}"
        raise _nothing(job_id, state, what + (f" ({len(final)} other(s))" if final else ""))
    yield f"job {job_id}: retry {len(picked)} failed task(s) with a fresh budget"
    for t in picked[:20]:
        v = classify_task(t.error, t.exit_code, t.cause, t.slurm_state)
        yield f"  {t.task_id}  {v.category:<14}  {(t.error or '')[:80]}"
    if dry_run:
        yield "dry run: nothing changed"
        return
    from slurmctl.executors import executor_for
    from slurmctl.watch import resubmit_once

    ids = {t.task_id for t in picked}
    lc.fresh_budget(only=lambda st: st.task_id in ids)
    _, message = resubmit_once(executor_for(backend, job))
    yield f"job {job_id}: {message}"
