"""``procstore resume [EXECUTION_ID]``: carry on unfinished executions to completion.

Before anything is resumed, every execution is checked for the host code it needs (modules,
functions, actions and guard predicates registered by name): one that the command line cannot
provide would fail its next step for good, so nothing is resumed and each procedure version gets
one line saying what to pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from procstore import (
    ExecutionState,
    ExecutionSummary,
    Procedure,
    ProcedureNotFound,
    ProcedureStore,
    Status,
    modules,
)
from procstore.actions import ActionNotAllowed, ActionRegistry, ModuleNotFound
from procstore.cli.db import db_missing, db_name, open_store
from procstore.cli.drive import Session, drive, drive_command, exit_code_of, final_lines
from procstore.cli.exits import CommandError, ExitCode
from procstore.cli.hostcode import HostCode, names_modules, state_defs
from procstore.cli.options import (
    DEFAULT_DB,
    DEFAULT_TIMEOUT_S,
    Db,
    Full,
    ModulePath,
    ResumeAllowModule,
    ResumeLocalModules,
    Timeout,
    Verbose,
)
from procstore.cli.output import status_text
from procstore.cli.progress import Output
from procstore.definition import FunctionAction


def resume(
    execution_id: Annotated[
        str | None,
        typer.Argument(
            metavar="EXECUTION_ID",
            help="The execution to resume; without it, every unfinished execution.",
            show_default=False,
        ),
    ] = None,
    allow_module: ResumeAllowModule = None,
    path: ModulePath = None,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
    db: Db = DEFAULT_DB,
    verbose: Verbose = False,
    full: Full = False,
    local_modules: ResumeLocalModules = True,
) -> None:
    """Resume unfinished executions (or EXECUTION_ID) and drive them to completion.

    An execution left running (its process died, was interrupted, or `run` timed out) carries
    on from what the database holds: an action that was running when it stopped runs again
    (at least once), retry delays and state timeouts continue from their stored deadlines,
    a compensation in progress carries on. Records are printed as they happen, as `run` does.

    The actions must be available here as they were to run: pass --path DIR with the
    directory that held FILE (its modules are allowed as run allowed them) and the
    --allow-module options run had. The command that run prints on a timeout or Ctrl-C has
    them all. An execution whose actions are missing is not resumed (exit 2): one line per
    procedure version says what to pass. Actions and guard predicates registered by name in
    an application cannot be provided by the CLI: resume those from the application with
    store.recover() after registering them.
    """
    code = HostCode(tuple(allow_module or []), tuple(path or []), local_modules)

    def work(output: Output, session: Session) -> Any:
        return _resume(execution_id, code, timeout, db, output, session)

    drive_command(verbose, db, work, full)


async def _resume(
    execution_id: str | None,
    code: HostCode,
    timeout: float,
    db: str,
    output: Output,
    session: Session,
) -> ExitCode:
    """Resume ``execution_id`` (every unfinished execution without it) with the host ``code``
    and drive them to their end (or ``timeout``), printing to ``output``; the exit code."""
    if db_missing(db):
        if execution_id is not None:
            raise CommandError(
                ExitCode.NOT_FOUND,
                f"error: no execution {execution_id!r}: no database at {db_name(db)}",
            )
        output.line(f"nothing to resume: no database at {db_name(db)}")
        return ExitCode.OK
    async with open_store(db, code=code) as store:
        everything = await store.executions()
        if execution_id is not None:
            found = [s for s in everything if s.id == execution_id]
            if not found:
                raise CommandError(
                    ExitCode.NOT_FOUND, f"error: no execution {execution_id!r} in {db_name(db)}"
                )
            if found[0].status != Status.RUNNING:
                status = status_text(found[0].status)
                output.line(f"execution   {execution_id} has already ended: {status}")
                return (
                    ExitCode.OK if found[0].status == Status.COMPLETED else ExitCode.NOT_COMPLETED
                )
            targets = found
        else:
            targets = [s for s in everything if s.status == Status.RUNNING]
            if not targets:
                output.line(f"nothing to resume: no unfinished execution in {db_name(db)}")
                return ExitCode.OK

        # Check first, resume after: an execution resumed without its host code would fail
        # its next step for good.
        any_names_modules = await _check_host_code(store, targets, code)
        session.resume_flags = code.resume_flags(any_names_modules)

        since = datetime.now(UTC)
        if execution_id is not None:
            executions = [await store.get_execution(execution_id)]
        else:
            executions = await store.recover()
        session.execution_ids += [execution.id for execution in executions]
        for execution in executions:
            output.line(
                f"resumed     {execution.id} {execution.procedure} {execution.version} "
                f"in {', '.join(execution.active) or execution.current}"
            )
        results = await drive(store, executions, timeout, output, since=since)
        finals = [(execution.state, timed_out) for execution, timed_out in results]
        _final_report(output, finals, timeout, session)
        return exit_code_of(finals)


def _final_report(
    output: Output,
    finals: Sequence[tuple[ExecutionState, bool]],
    timeout: float,
    session: Session,
) -> None:
    """How the resumed executions ended (each with whether it timed out): one execution as
    ``run`` reports its end, several one line each."""
    if len(finals) == 1:
        final, timed_out = finals[0]
        final_lines(output, final, timed_out, timeout, session)
        return
    for final, timed_out in finals:
        status = status_text(final.status)
        if timed_out:
            output.line(f"timeout     {final.id} still {status} in state {final.current}")
        else:
            output.line(f"status      {final.id} {status} (state: {final.current})")


async def _check_host_code(
    store: ProcedureStore, targets: Sequence[ExecutionSummary], code: HostCode
) -> bool:
    """Raise a usage error when some of ``targets`` need host code ``code`` cannot provide:
    one line per procedure version, with what to pass. Whether any of their procedures names
    a module (so the resume command to print needs the module flags)."""
    waiting: dict[tuple[str, str], list[str]] = {}
    for summary in targets:
        waiting.setdefault((summary.procedure, summary.version), []).append(summary.id)
    problems: list[str] = []
    registry = code.registry()
    any_names_modules = False
    for (name, version), ids in waiting.items():
        try:
            procedure = await store.get(name, version)
        except ProcedureNotFound:  # cannot be loaded: recover() quarantines these
            continue
        any_names_modules = any_names_modules or names_modules(procedure)
        clauses = _missing_host_code(procedure, registry)
        if clauses:
            problems.append(
                f"cannot resume {_executions_text(ids, name, version)}: {'; '.join(clauses)}"
            )
    if problems:
        raise CommandError(ExitCode.USAGE, *problems, "nothing was resumed")
    return any_names_modules


def _missing_host_code(procedure: Procedure, registry: ActionRegistry) -> list[str]:
    """What the CLI cannot provide for ``procedure``'s executions, as clauses of one line,
    each with what to pass: modules not allowed or not found, functions a module lacks,
    actions and guard predicates an application registers by name. Checked as registration
    checks, without importing (running) any module."""
    refused: dict[str, None] = {}  # not allowed here
    unfound: dict[str, None] = {}  # allowed by name, found nowhere
    by_name: dict[str, None] = {}
    other: dict[str, None] = {}
    for path, state in state_defs(procedure).items():
        for action in (state.action, state.compensate):
            if not isinstance(action, FunctionAction):
                continue
            if action.module is None:
                by_name.setdefault(f"action {action.function!r}")
            elif registry.refusal(action.module) is not None:
                refused.setdefault(action.module)
            else:
                try:
                    registry.check(action)
                except ModuleNotFound:
                    unfound.setdefault(action.module)
                except ActionNotAllowed as exc:
                    other.setdefault(f"state {path}: {exc.message}")
        predicates = (n for t in state.transitions for n in (*t.conditions, *t.unless))
        by_name.update(dict.fromkeys(f"guard predicate {name!r}" for name in predicates))
    clauses = _modules_clauses(list(refused), list(unfound))
    clauses += other
    if by_name:
        clauses.append(
            f"{', '.join(by_name)} {'are' if len(by_name) > 1 else 'is'} registered by name in "
            "an application: resume it there (store.recover() after registering them)"
        )
    return clauses


def _modules_clauses(refused: list[str], unfound: list[str]) -> list[str]:
    """The clause (none when both lists are empty) for the modules the actions need: those
    ``refused`` here (not allowed) and those allowed but ``unfound``, with the
    ``--allow-module`` and ``--path`` options that would provide them."""
    if not refused and not unfound:
        return []
    flags: list[str] = []
    holding: list[str] = []  # what the directory to pass with --path must hold
    for module in [*refused, *unfound]:
        findable = _findable(module)
        if module in refused and (findable or "." in module):
            flags += ["--allow-module", module]  # --path allows only plain module files
        if not findable:
            top = module.split(".")[0]
            holding.append(f"{top}/" if "." in module else f"{top}.py")
    if holding:
        flags += ["--path", "DIR"]
    names = ", ".join(repr(m) for m in [*refused, *unfound])
    clause = f"its actions need module{'s' if len(refused) + len(unfound) > 1 else ''} "
    clause += f"{names}: pass {' '.join(flags)}"
    if holding:
        clause += f" (DIR: the directory that holds {', '.join(dict.fromkeys(holding))})"
    return [clause]


def _findable(module: str) -> bool:
    """Whether ``module`` is found on ``sys.path`` (without importing anything)."""
    try:
        return modules.find_spec(module) is not None
    except modules.ModuleUnreadable:
        return False


def _executions_text(ids: Sequence[str], procedure: str, version: str) -> str:
    """``execution ID (name@version)``, or ``3 executions of name@version (ID, ID, ID)``."""
    if len(ids) == 1:
        return f"execution {ids[0]} ({procedure}@{version})"
    return f"{len(ids)} executions of {procedure}@{version} ({', '.join(ids)})"
