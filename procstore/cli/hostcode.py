"""The host code a command lets function actions name, and how it tells ``resume``.

``run`` and ``validate`` allow the modules beside FILE (each as that file) and the
``--allow-module`` ones; ``resume`` allows those of each ``--path DIR``. Which files count as
modules and what is allowed is the library's rule (`procstore.actions`): `HostCode` only
gathers what the command line says and hands it to `ActionRegistry` and `ProcedureStore`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from procstore import Procedure, ProcedureStore
from procstore.actions import ActionRegistry, module_files_in
from procstore.chart import build_chart
from procstore.cli.exits import CommandError, ExitCode
from procstore.definition import FunctionAction, StateDef
from procstore.storage.leasing import DEFAULT_LEASE_SECONDS
from procstore.worker import DEFAULT_CONCURRENCY


def _add_to_sys_path(directory: Path) -> None:
    """Put ``directory`` last on ``sys.path`` so an actions module in it imports, while a file
    there named like another module (``json.py``) never shadows that module."""
    entry = str(directory.resolve())
    if entry not in sys.path:
        sys.path.append(entry)


@dataclass(frozen=True)
class HostCode:
    """The modules a command lets function actions name: the ``--allow-module`` ones by name
    and, unless ``--no-local-modules``, the ``.py`` files in its directories (FILE's for
    ``run`` and ``validate``, each ``--path DIR`` for ``resume``), each as that file. The
    directories are appended to ``sys.path``, so those modules import when an action runs."""

    allowed: tuple[str, ...]
    directories: tuple[Path, ...]
    local: bool = True

    @classmethod
    def beside(cls, file: Path, allowed: Iterable[str], local: bool) -> HostCode:
        """What ``run`` and ``validate`` allow for FILE."""
        return cls(tuple(allowed), (file.parent,), local)

    @property
    def files(self) -> list[Path]:
        """The module files in the directories, allowed by default: running a file from the
        command line trusts the code that lies next to it (``--no-local-modules`` turns this
        off). Each is allowed as that file only, never by its name: an empty
        ``subprocess.py`` there does not allow the standard library's ``subprocess``."""
        return [f for d in self.directories for f in module_files_in(d)] if self.local else []

    def registry(self) -> ActionRegistry:
        """The allowlist (to check with, as the store checks). Two directories that hold a
        module of the same name are a usage error."""
        try:
            return ActionRegistry(self.allowed, self.files)
        except ValueError as exc:
            raise CommandError(ExitCode.USAGE, f"error: {exc}") from None

    def store(
        self,
        db: str | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> ProcedureStore:
        """A store with this allowlist (in memory without ``db``); ``concurrency`` and
        ``lease_seconds`` are a PostgreSQL worker's (``procstore worker``)."""
        self.registry()
        for directory in self.directories:
            _add_to_sys_path(directory)
        return ProcedureStore(
            db,
            allowed_modules=self.allowed,
            allowed_module_files=self.files,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
        )

    def describe(self, file: Path) -> str:
        """What ``run`` or ``validate`` allows for ``file``, in its terms, on one line."""
        given = ", ".join(self.allowed) or "none"
        if not self.local:
            return (
                f"function actions may name only the --allow-module modules ({given}), not "
                f"the modules beside {file} (--no-local-modules)"
            )
        names = ", ".join(p.name for p in self.files) or "none"
        return (
            f"function actions may name the modules beside {file} ({names}) and the "
            f"--allow-module modules ({given})"
        )

    def resume_flags(self, names_modules: bool) -> list[str]:
        """The options that let ``resume`` find and allow what this command allowed, for
        procedures whose actions name modules (``names_modules``); none for the others."""
        if not names_modules:
            return []
        flags: list[str] = []
        for directory in self.directories:
            flags += ["--path", str(directory)]
        if self.directories and not self.local:
            flags.append("--no-local-modules")
        for module in self.allowed:
            flags += ["--allow-module", module]
        return flags


def names_modules(procedure: Procedure) -> bool:
    """Whether a function action of ``procedure`` names a module."""
    return any(
        isinstance(action, FunctionAction) and action.module is not None
        for state in state_defs(procedure).values()
        for action in (state.action, state.compensate)
    )


def state_defs(procedure: Procedure) -> dict[str, StateDef]:
    """Every state of ``procedure`` (not the regions) by its path, in document order."""
    return {node.path: node.state for node in build_chart(procedure) if node.state is not None}
