"""Action implementations and the allowlist that decides which host code a definition may call.

A definition is data, possibly written by an untrusted agent, so it never names code directly:
`function` actions resolve either to a callable the host registered by name
(`@store.action("deploy.build")`) or to a public function defined in a module the host
listed in `allowed_modules`. Nothing else is importable from a definition.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from procstore import arguments, modules
from procstore.clock import SYSTEM, Clock
from procstore.definition import (
    Action,
    FailAction,
    FunctionAction,
    LogAction,
    NoopAction,
    SleepAction,
)
from procstore.errors import ActionFailed
from procstore.outcome import ActionInfo

#: A file system path, as `open()` takes it.
StrPath = str | os.PathLike[str]

logger = logging.getLogger("procstore")

#: A host callable: `fn(context, **args)`, or `fn(context, info, **args)` to receive the
#: attempt's `procstore.ActionInfo`; sync or async, returning the action's result.
ActionCallable = Callable[..., Any]
#: What the runtime awaits to run one attempt of an action: given the context, the attempt's
#: info and the action's rendered `args` (``None`` when it has none).
Invoker = Callable[[dict[str, Any], ActionInfo, dict[str, Any] | None], Awaitable[Any]]


class ActionNotAllowed(LookupError):
    """A `function` action names code the host did not allow, or code that cannot be used.

    Attributes:
        field: The action field at fault, `module` or `function`.
        message: What is wrong, in plain words.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ModuleNotFound(ActionNotAllowed):
    """An allowed module name that no module on ``sys.path`` answers to."""

    def __init__(self, module: str) -> None:
        super().__init__("module", f"no module named {module!r} can be found")


def is_module_file(path: StrPath) -> bool:
    """Whether ``path`` can be an allowed module file: a ``.py`` file named like a public
    module (``deploy_actions.py``; not ``_private.py``, ``my-actions.py``)."""
    path = Path(path)
    return path.suffix == ".py" and path.stem.isidentifier() and not path.stem.startswith("_")


def module_files_in(directory: StrPath) -> list[Path]:
    """The files in ``directory`` that can be allowed module files (`is_module_file`), sorted:
    what a host that trusts the code in a directory passes as ``module_files``."""
    return sorted(p for p in Path(directory).glob("*.py") if is_module_file(p))


class ActionRegistry:
    """The host's allowlist: named callables, modules allowed by name (with their
    submodules) and modules allowed by file.

    Two moments use it. `check`, when a procedure is registered, decides whether an action may
    name what it names *without running any host code*: a module's source is found and read
    (`procstore.modules`), never imported. `resolve`, when the action runs, imports the module
    and returns the callable, checking the same rules again on the live objects.

    Args:
        allowed_modules: Module names: whatever module answers to one of them (or to a
            submodule of one) may be called.
        module_files: ``.py`` files, each allowing the one module named by its stem, and only
            as that file: when that name imports another file (the standard library's
            ``subprocess`` for a ``subprocess.py``), the module is refused. A name also in
            `allowed_modules` is allowed by name.

    Raises:
        ValueError: a module file is not a ``.py`` file named like a public module, or two
            files name the same module.
    """

    def __init__(
        self, allowed_modules: Iterable[str] = (), module_files: Iterable[StrPath] = ()
    ) -> None:
        self.allowed_modules: frozenset[str] = frozenset(allowed_modules)
        self.module_files: dict[str, Path] = {}
        for entry in module_files:
            path = Path(entry).resolve()
            name = path.stem
            if not is_module_file(path):
                raise ValueError(f"{entry} is not a .py file named like a public module")
            if name in self.module_files and self.module_files[name] != path:
                raise ValueError(
                    f"{entry} and {self.module_files[name]} are both files of module {name!r}"
                )
            self.module_files[name] = path
        self._callables: dict[str, ActionCallable] = {}

    def register(self, name: str, fn: ActionCallable) -> None:
        """Make `fn` callable from definitions as `{"type": "function", "function": name}`."""
        if not callable(fn):
            raise TypeError(f"action {name!r} must be callable, got {type(fn).__name__}")
        self._callables[name] = fn

    @property
    def names(self) -> list[str]:
        """The names of the registered callables (what `{"type": "function", "function": NAME}`
        may name), sorted."""
        return sorted(self._callables)

    def is_module_allowed(self, module: str) -> bool:
        """An allowed package allows its submodules too (`myapp` allows `myapp.actions`); a
        module file allows its own module only."""
        return self._allowed_by_name(module) or module in self.module_files

    def _allowed_by_name(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.allowed_modules)

    def _file_of(self, module: str) -> Path | None:
        """The one file `module` may be, when it is allowed only by file."""
        return None if self._allowed_by_name(module) else self.module_files.get(module)

    def _check_file(self, module: str, origin: str | None) -> None:
        """Refuse `module` when it is allowed only as a file and `origin` is another one."""
        expected = self._file_of(module)
        if expected is None:
            return
        try:
            same = origin is not None and os.path.samefile(origin, expected)
        except OSError:
            same = False
        if not same:
            raise ActionNotAllowed(
                "module",
                f"module {module!r} is allowed only as the file {expected}, but that name "
                f"imports {origin or 'a module without a file'}: give the file a name that "
                "no other module has",
            )

    def check(self, spec: FunctionAction) -> None:
        """Check, without importing or running anything, that `spec` names allowed code.

        A module already imported is checked on the live module (as `resolve` would); any
        other is located through the import system's finders and its source read with
        `ast`: the function must be bound by a top-level `def` or `async def` of that module.

        Raises:
            ActionNotAllowed: `spec` names code the host did not allow, a module that cannot
                be found or read, or an action name nobody registered.
        """
        if spec.module is None:
            self._registered(spec.function)
            return
        module, function = spec.module, spec.function
        self._check_names(module, function)
        loaded = sys.modules.get(module)
        if loaded is not None:
            self._check_file(module, getattr(loaded, "__dict__", {}).get("__file__"))
            self._defined_in(loaded, module, function)
            return
        try:
            found = modules.find_spec(module)
            if found is None:
                raise ModuleNotFound(module)
            self._check_file(module, found.origin)
            names = modules.defined_functions(modules.source_file(found))
        except modules.ModuleUnreadable as exc:
            raise ActionNotAllowed(
                "module", f"module {module!r} cannot be checked: {exc}"
            ) from None
        if function not in names:
            raise ActionNotAllowed(
                "function", f"module {module!r} defines no public function {function!r}"
            )

    def signature(self, spec: FunctionAction) -> inspect.Signature | None:
        """What the callable `spec` names takes, found as `check` finds it (without running
        host code: an unimported module's ``def`` is read from its source), or ``None`` when
        that cannot be told (a decorated function, a builtin). Call it after `check` passed."""
        try:
            if spec.module is None:
                return inspect.signature(self._registered(spec.function))
            loaded = sys.modules.get(spec.module)
            if loaded is not None:
                return inspect.signature(self._defined_in(loaded, spec.module, spec.function))
            found = modules.find_spec(spec.module)
            if found is None:
                return None
            return modules.function_signature(modules.source_file(found), spec.function)
        except (ActionNotAllowed, modules.ModuleUnreadable, TypeError, ValueError):
            return None

    def resolve(self, spec: FunctionAction) -> ActionCallable:
        """Return the callable `spec` names, importing its module if need be (which runs the
        module's code: this is for running an action, `check` is for registering one).

        Raises:
            ActionNotAllowed: `spec` names code the host did not allow, a module that fails
                to import (whatever it raised is in the message and chained as the cause), or
                an action name nobody registered.
        """
        if spec.module is None:
            return self._registered(spec.function)
        module, function = spec.module, spec.function
        self._check_names(module, function)
        if self._file_of(module) is not None and module not in sys.modules:
            # Before importing: the file that would run must be the allowed one.
            try:
                found = modules.find_spec(module)
            except modules.ModuleUnreadable as exc:
                raise ActionNotAllowed("module", f"cannot find module {module!r}: {exc}") from None
            self._check_file(module, found.origin if found is not None else None)
        try:
            mod = importlib.import_module(module)
        except (Exception, SystemExit) as exc:  # its top level may raise anything
            raise ActionNotAllowed(
                "module", f"cannot import module {module!r}: {type(exc).__name__}: {exc}"
            ) from exc
        # After: the module imported (perhaps earlier, by someone else) is that file.
        self._check_file(module, getattr(mod, "__dict__", {}).get("__file__"))
        return self._defined_in(mod, module, function)

    def _registered(self, name: str) -> ActionCallable:
        fn = self._callables.get(name)
        if fn is None:
            known = ", ".join(sorted(self._callables)) or "none"
            raise ActionNotAllowed(
                "function",
                f"no action named {name!r} is registered with the store (registered: {known})",
            )
        return fn

    def refusal(self, module: str) -> str | None:
        """Why a `function` action may not name `module` at all (neither allowed by name nor
        by file), as `check` and `resolve` say it; `None` when `module` is allowed.

        A caller that speaks to someone else than a Python programmer (the command line) can
        tell this refusal from the other problems of a document by this exact message."""
        if self.is_module_allowed(module):
            return None
        allowed = ", ".join(sorted(self.allowed_modules)) or "none"
        files = ", ".join(sorted(self.module_files))
        return f"module {module!r} is not in the store's allowed_modules ({allowed})" + (
            f" nor the module of one of its allowed_module_files ({files})" if files else ""
        )

    def _check_names(self, module: str, function: str) -> None:
        refusal = self.refusal(module)
        if refusal is not None:
            raise ActionNotAllowed("module", refusal)
        # A package's __main__, its __init__ as a module of its own, private helpers: none is
        # an actions module, and naming one would run code the host never meant to expose.
        if any(not part.isidentifier() or part.startswith("_") for part in module.split(".")):
            raise ActionNotAllowed(
                "module",
                f"module {module!r} is not public: a name with a part starting with '_' "
                "(__main__, __init__, a private module) is never allowed",
            )
        if not function.isidentifier() or function.startswith("_"):
            raise ActionNotAllowed(
                "function", f"{function!r} is not a public function name of {module!r}"
            )

    @staticmethod
    def _defined_in(mod: ModuleType, module: str, function: str) -> ActionCallable:
        # The module's namespace, not getattr(): a module-level __getattr__ would run host
        # code for a name the module does not bind.
        fn = getattr(mod, "__dict__", {}).get(function)
        # Only code *defined* in the allowed module counts: a name it merely imported (say
        # ``from subprocess import run``) would otherwise widen the allowlist unnoticed.
        if not callable(fn) or getattr(fn, "__module__", None) != module:
            raise ActionNotAllowed(
                "function", f"module {module!r} defines no public function {function!r}"
            )
        return cast(ActionCallable, fn)


@functools.lru_cache(maxsize=4096)
def _wants_info(fn: ActionCallable, names: frozenset[str]) -> bool:
    """Whether `fn` takes a second positional parameter without a default that is not one of
    the args' `names` (the ActionInfo); `lambda c, t=t: ...` does not."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return arguments.takes_info(signature, names)


async def _call(
    fn: ActionCallable, context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None
) -> Any:
    args = args or {}
    names = frozenset(args)
    try:
        wants_info = _wants_info(fn, names)
    except TypeError:  # unhashable callable: look at it every time
        wants_info = _wants_info.__wrapped__(fn, names)
    result = cast(Any, fn)(context, info, **args) if wants_info else fn(context, **args)
    if inspect.isawaitable(result):
        result = await result
    return result


def make_invoker(spec: Action, registry: ActionRegistry, clock: Clock = SYSTEM) -> Invoker:
    """Turn an action spec into the coroutine function the runtime awaits for one attempt
    (``sleep`` waits on ``clock``).

    Host code is looked up at each call — callables registered by name and module functions
    alike — so the host may register its actions after a store with stored procedures opened,
    and an unknown name fails that attempt with a clear error.
    """
    if isinstance(spec, NoopAction):
        return _noop
    if isinstance(spec, LogAction):
        return _make_log(spec.message)
    if isinstance(spec, SleepAction):
        return _make_sleep(spec.ms / 1000, clock)
    if isinstance(spec, FailAction):
        return _make_fail(spec.message)

    def invoke(
        context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None
    ) -> Awaitable[Any]:
        return _call(registry.resolve(spec), context, info, args)

    return invoke


async def _noop(
    context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None
) -> dict[str, Any] | None:
    # With args, a noop is Step Functions' Pass state: what it passes on is its args.
    return args


def _make_log(message: str) -> Invoker:
    async def log(context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None) -> None:
        logger.info("%s", message)

    return log


def _make_sleep(seconds: float, clock: Clock) -> Invoker:
    async def sleep(context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None) -> None:
        await clock.sleep(seconds)

    return sleep


def _make_fail(message: str | None) -> Invoker:
    async def fail(context: dict[str, Any], info: ActionInfo, args: dict[str, Any] | None) -> None:
        raise ActionFailed(message or "fail action")

    return fail
