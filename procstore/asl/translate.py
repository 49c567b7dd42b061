"""The translation of an ASL state machine into a procedure document, state by state.

`import_asl` is the entry point (see the package's docstring). A `_Translator` walks the
machine (and each Parallel branch, a machine of its own) and collects every problem with the
ASL path of the field at fault, so that one run reports them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from procstore.asl.choice import rule_expression
from procstore.asl.paths import Untranslatable, relative, template
from procstore.datapaths import CONTEXT, DataPath
from procstore.definition import MAX_MAP_CONCURRENCY
from procstore.documents import DocumentError, check_data, json_path, parse_json
from procstore.errors import Problem, ProcstoreError

__all__ = ["ERRORS_BY_ASL_NAME", "AslNotTranslated", "import_asl"]

ERRORS_BY_ASL_NAME: Final[Mapping[str, str | None]] = {
    "States.ALL": None,  # every error: a retry policy or a catch without `errors`
    "States.TaskFailed": "Exception",  # every error of the action (Timeout included, see docs)
    "States.Timeout": "Timeout",
    "States.ParameterPathFailure": "PathNotFound",
    "States.ResultPathMatchFailure": "PathNotFound",
}
"""ASL's predefined error names that have a procstore counterpart (an exception class name
matched with its subclasses, or ``None``: any error). Other ``States.*`` names are problems;
any other name is an exception class name, as the host code raises it."""

END_STATE: Final = "end"
"""The terminal state added (as ``end``, ``end_2``...) for a Task or Parallel whose ``End``
comes after a ``Catch``: in procstore a state with transitions is not terminal."""

CALLBACK_SUFFIX: Final = ".waitForTaskToken"
"""A Task resource that ends so waits for its token (``callback: true``)."""
EVENT_DATA: Final = "$$.event.data"  # what a completed callback carries
# What Step Functions' error output is, from the error an error transition handles.
ERROR_OUTPUT: Final = {"Error.$": "$$.error.type", "Cause.$": "$$.error.message"}

#: A Map state's tolerated failures, by ASL field.
_TOLERATED: Final = {
    "ToleratedFailureCount": "tolerated_failures",
    "ToleratedFailurePercentage": "tolerated_failure_percentage",
}
_WAIT_FIELDS: Final = {
    "Seconds": "seconds",
    "Timestamp": "timestamp",
    "SecondsPath": "seconds_path",
    "TimestampPath": "timestamp_path",
}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
# "package.module:function", as an entry point names code; anything else names a registered
# action.
_ENTRY_POINT = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)")


class AslNotTranslated(ProcstoreError):
    """An ASL document that `import_asl` cannot translate; ``problems`` lists every reason,
    each with the ASL path of the field at fault (``$.States.Charge.HeartbeatSeconds``)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(
            f"cannot import the ASL definition ({len(self.problems)} problem(s)):\n{lines}"
        )


def import_asl(
    source: Mapping[str, Any] | str,
    *,
    name: str = "imported",
    version: str = "1.0",
    resource_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The procedure document for the ASL state machine ``source`` (a dict, or its JSON text).

    Args:
        source: The state machine: ``StartAt``, ``States``, optionally ``Comment`` and
            ``TimeoutSeconds``.
        name: The procedure's name.
        version: The procedure's version.
        resource_map: Each Task ``Resource`` (or ``"*"``, for any other) → the action that
            runs it: ``"module:function"`` or a registered action's name. A resource it does
            not name is taken as a registered action's name.

    Returns:
        A procedure document (plain data, JSON-compatible) for `ProcedureStore.register`.

    Raises:
        AslNotTranslated: ``source`` is not JSON, not an ASL state machine, or uses something
            procstore has no counterpart for; every problem is listed.
    """
    try:
        data = parse_json(source) if isinstance(source, str) else source
        check_data(data)
    except DocumentError as exc:
        raise AslNotTranslated(exc.problems) from None
    if not isinstance(data, Mapping):
        raise AslNotTranslated([Problem("$", "an ASL state machine is a JSON object")])
    translator = _Translator(resource_map or {})
    definition = translator.machine(data, ())
    if translator.problems:
        raise AslNotTranslated(translator.problems)
    document: dict[str, Any] = {"name": name, "version": version, "definition": definition}
    if isinstance(data.get("Comment"), str):
        document["description"] = data["Comment"]
    return document


def procedure_name(text: str) -> str:
    """A procedure name made of ``text`` (a file's stem, say): the characters a name may not
    have become ``_``."""
    cleaned = _NAME_CHARS.sub("_", text).strip("_.-")
    return cleaned[:200] or "imported"


Loc = tuple[str | int, ...]


class _Translator:
    """Translates one ASL document; ``problems`` collects what it could not."""

    def __init__(self, resource_map: Mapping[str, str]) -> None:
        self.resource_map = resource_map
        self.problems: list[Problem] = []

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(json_path(loc), message))

    # -- machines ----------------------------------------------------------------------------

    def machine(self, data: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        """A machine (the document, or a Parallel branch) as ``definition`` / a region."""
        top = not loc
        allowed = {"StartAt", "States", "Comment"} | (
            {"TimeoutSeconds", "Version", "QueryLanguage"} if top else set()
        )
        self.unknown(data, allowed, loc)
        if data.get("QueryLanguage", "JSONPath") != "JSONPath":
            self.problem((*loc, "QueryLanguage"), "only JSONPath documents are translated")
        states = data.get("States")
        if not isinstance(states, Mapping) or not states:
            self.problem((*loc, "States"), "required: an object of states, at least one")
            return {}
        names = _state_names(states)
        start = data.get("StartAt")
        if start not in states:
            self.problem(
                (*loc, "StartAt"), f"required: the name of one of the States, not {start!r}"
            )
        initial = names.get(start, "missing") if isinstance(start, str) else "missing"
        out: dict[str, Any] = {"initial_state": initial, "states": {}}
        ends: dict[str, dict[str, Any]] = {}  # terminal states added, by name
        for asl_name, state in states.items():
            where = (*loc, "States", asl_name)
            if not isinstance(state, Mapping):
                self.problem(where, "a state is an object")
                continue
            translated = _State(self, names, where, state, ends).translate()
            if translated is not None:
                out["states"][names[asl_name]] = translated
        out["states"].update(ends)
        if top and "TimeoutSeconds" in data:
            seconds = data["TimeoutSeconds"]
            if _positive_number(seconds):
                out["timeout_ms"] = seconds * 1000
            else:
                self.problem((*loc, "TimeoutSeconds"), "a positive number of seconds")
        return out

    def unknown(self, data: Mapping[str, Any], allowed: set[str], loc: Loc) -> None:
        for key in data:
            if key not in allowed:
                self.problem((*loc, key), f"{key} is not translated here")


class _State:
    """One ASL state being translated."""

    def __init__(
        self,
        translator: _Translator,
        names: Mapping[str, str],
        loc: Loc,
        data: Mapping[str, Any],
        ends: dict[str, dict[str, Any]],
    ) -> None:
        self.t = translator
        self.names = names
        self.loc = loc
        self.data = data
        self.ends = ends
        self.input: DataPath | None = None
        self.empty_input = False  # InputPath null: the state reads nothing of its input
        self.output: str | None = None  # OutputPath, as the success transition's `output`

    def translate(self) -> dict[str, Any] | None:
        kind = self.data.get("Type")
        by_type: dict[str, Callable[[], dict[str, Any] | None]] = {
            "Task": self.task,
            "Pass": self.pass_state,
            "Wait": self.wait,
            "Choice": self.choice,
            "Succeed": self.succeed,
            "Fail": self.fail,
            "Parallel": self.parallel,
            "Map": self.map_state,
        }
        translate = by_type.get(kind) if isinstance(kind, str) else None
        if translate is None:
            self.problem("Type", f"{kind!r} is not a state type procstore translates")
            return None
        self.input = self._input_path()
        self._output_path()
        out = translate()
        if out is not None and isinstance(self.data.get("Comment"), str):
            out = {"description": self.data["Comment"], **out}
        return out

    # -- by type -------------------------------------------------------------------------------

    def task(self) -> dict[str, Any]:
        self.allow("Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch",
                   "TimeoutSeconds", "Next", "End")  # fmt: skip
        action = self.resource()
        callback = str(self.data.get("Resource", "")).endswith(CALLBACK_SUFFIX)
        state: dict[str, Any] = {"action": action}
        assign = None
        if callback:  # its output is what the outside system completes the token with
            state["callback"] = True
            if "Retry" in self.data:  # Step Functions runs the task again; procstore does not
                self.problem("Retry", "a callback task's Retry is not translated: a failed "
                             "callback is not retried")  # fmt: skip
            action.update(self.data_flow(store_result=False))
            assign = self.stored_at("ResultPath", self.data.get("ResultPath", CONTEXT), EVENT_DATA)
            if "ResultSelector" in self.data:
                self.problem("ResultSelector", "a callback task's ResultSelector is not translated")
        else:
            action.update(self.data_flow())
        if "TimeoutSeconds" in self.data:
            seconds = self.data["TimeoutSeconds"]
            if not _positive_number(seconds):
                self.problem("TimeoutSeconds", "a positive number of seconds")
            elif callback:  # the whole wait for the token: Step Functions' States.Timeout
                state["timeout_ms"] = seconds * 1000
            else:
                action["timeout_ms"] = seconds * 1000
        retry = self.retry()
        if retry:
            state["retry"] = retry
        return {**state, **self.next_and_catch("success", assign=assign, must_leave=callback)}

    def pass_state(self) -> dict[str, Any]:
        self.allow("Parameters", "Result", "ResultPath", "Next", "End")
        action: dict[str, Any] = {"type": "noop"}
        if "Result" in self.data:
            if "Parameters" in self.data:
                self.problem("Result", "a Pass state with both Result and Parameters")
            if not isinstance(self.data["Result"], Mapping):
                self.problem("Result", "a Result that is not an object is not translated")
            try:
                action["args"] = _literal(self.data["Result"])
            except Untranslatable as exc:
                self.problem("Result", str(exc))
            action.update(self.result_path())
        elif "Parameters" in self.data:
            action.update(self.data_flow(whole_input=False))
        elif "ResultPath" in self.data:
            self.problem(
                "ResultPath", "a Pass state that copies its input elsewhere is not translated"
            )
        elif self.input is not None and self.input.segments:
            # Its output is its input: the part the InputPath selects (then the OutputPath's).
            output = self.data.get("OutputPath", CONTEXT)
            self.output = self.path("OutputPath", output) if output is not None else None
        return {"action": action, **self.next_and_catch("success", catch=False)}

    def wait(self) -> dict[str, Any]:
        self.allow(*_WAIT_FIELDS, "Next", "End")
        given = [field for field in _WAIT_FIELDS if field in self.data]
        if len(given) != 1:
            self.problem("Type", "a Wait state has exactly one of " + ", ".join(_WAIT_FIELDS))
            return {}
        [field] = given
        value = self.data[field]
        if field.endswith("Path"):
            value = self.path(field, value)
        return {"wait": {_WAIT_FIELDS[field]: value}, **self.next_and_catch("success", catch=False)}

    def choice(self) -> dict[str, Any]:
        self.allow("Choices", "Default")
        rules = self.data.get("Choices")
        if not isinstance(rules, list) or not rules:
            self.problem("Choices", "required: a non-empty list of rules")
            return {}
        choice = []
        for index, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                self.problem(("Choices", index), "a rule is an object")
                continue
            try:
                guard = rule_expression(rule, self.input)
            except Untranslatable as exc:
                self.problem(("Choices", index), str(exc))
                continue
            choice.append(
                {
                    "guard": guard,
                    "target": self.target(("Choices", index, "Next"), rule.get("Next")),
                }
            )
        if "Default" in self.data:
            default = self.target("Default", self.data["Default"])
        else:  # Step Functions fails with States.NoChoiceMatched
            default = self.end_state(error="States.NoChoiceMatched")
        return {"choice": choice, "default": default}

    def succeed(self) -> dict[str, Any]:
        self.allow()
        return {}

    def fail(self) -> dict[str, Any]:
        self.allow("Error", "Cause")
        out: dict[str, Any] = {"outcome": "failure"}
        for field in ("Error", "Cause"):
            if field in self.data:
                if isinstance(self.data[field], str):
                    out[field.lower()] = self.data[field]
                else:
                    self.problem(field, "a string")
        return out

    def parallel(self) -> dict[str, Any]:
        self.allow("Branches", "Retry", "Catch", "Next", "End", "ResultPath")
        # The branches share the execution's context (each writes its own keys): a Parallel's
        # output array has no counterpart, so only ResultPath null (keep the input) is.
        if self.data.get("ResultPath", CONTEXT) is not None:
            self.problem(
                "ResultPath",
                "a Parallel's output array is not translated: its branches write into one "
                'context; give it "ResultPath": null',
            )
        branches = self.data.get("Branches")
        if not isinstance(branches, list) or len(branches) < 2:
            # A procstore parallel state has two regions at least; one branch is a compound.
            if (
                isinstance(branches, list)
                and len(branches) == 1
                and isinstance(branches[0], Mapping)
            ):
                compound = self.t.machine(branches[0], (*self.loc, "Branches", 0))
                return {**compound, **self.next_and_catch("done")}
            self.problem("Branches", "required: a list of branches, at least one")
            return {}
        regions = {}
        for index, branch in enumerate(branches):
            if not isinstance(branch, Mapping):
                self.problem(("Branches", index), "a branch is an object")
                continue
            regions[f"branch_{index + 1}"] = self.t.machine(branch, (*self.loc, "Branches", index))
        state: dict[str, Any] = {"parallel": regions}
        retry = self.retry()
        if retry:
            self.problem("Retry", "a Parallel state's Retry is not translated (retry its Tasks)")
        return {**state, **self.next_and_catch("done")}

    def map_state(self) -> dict[str, Any]:
        """A map state: ItemsPath, ItemSelector (or the older Parameters), ItemProcessor (or
        Iterator) as the item states, MaxConcurrency (0: no bound but procstore's
        ``MAX_MAP_CONCURRENCY``), ToleratedFailureCount/Percentage, ResultPath."""
        self.allow("ItemsPath", "ItemSelector", "Parameters", "ItemProcessor", "Iterator",
                   "MaxConcurrency", "ToleratedFailureCount", "ToleratedFailurePercentage",
                   "ResultPath", "Retry", "Catch", "Next", "End")  # fmt: skip
        field = "Iterator" if "Iterator" in self.data else "ItemProcessor"
        processor = self.data.get(field)
        if not isinstance(processor, Mapping):
            self.problem(field, "required: the item states (StartAt and States)")
            return {}
        # How Step Functions runs the items (inline or as child workflows): procstore runs each
        # as an execution of its own either way.
        items = {key: value for key, value in processor.items() if key != "ProcessorConfig"}
        spec: dict[str, Any] = {
            "items_path": self.path("ItemsPath", self.data.get("ItemsPath", CONTEXT)),
            **self.t.machine(items, (*self.loc, field)),
        }
        for selector in ("ItemSelector", "Parameters"):
            if selector in self.data:
                spec["item_selector"] = self.template(selector, self.data[selector], self.input)
        concurrency = self.data.get("MaxConcurrency", 0)
        if not isinstance(concurrency, int) or concurrency < 0:
            self.problem("MaxConcurrency", "a whole number, 0 or more")
        elif concurrency:
            spec["max_concurrency"] = min(concurrency, MAX_MAP_CONCURRENCY)
        for asl, ours in _TOLERATED.items():
            if asl in self.data:
                spec[ours] = self.data[asl]
        if self.data.get("ResultPath", CONTEXT) == CONTEXT:
            self.problem(
                "ResultPath",
                "a Map state's output replaces its whole input ($), which procstore cannot "
                "hold (its context is an object): give a ResultPath such as $.results",
            )
        else:
            spec.update(self.result_path())
        if self.data.get("Retry") is not None:
            self.problem("Retry", "a Map state's Retry is not translated (retry its Tasks)")
        return {"map": spec, **self.next_and_catch("done")}

    # -- the parts -------------------------------------------------------------------------------

    def resource(self) -> dict[str, Any]:
        resource = self.data.get("Resource")
        if not isinstance(resource, str) or not resource:
            self.problem("Resource", "required: the task's resource (an ARN, or a placeholder)")
            return {"type": "function", "function": "missing"}
        mapping = self.t.resource_map
        mapped = mapping.get(resource, mapping.get("*"))
        if mapped is None:  # the resource itself names a registered action
            return {"type": "function", "function": resource}
        entry_point = _ENTRY_POINT.fullmatch(mapped)
        if entry_point is None:  # the name of a registered action (an ARN, say)
            return {"type": "function", "function": mapped}
        return {"type": "function", "module": entry_point[1], "function": entry_point[2]}

    def data_flow(self, *, whole_input: bool = True, store_result: bool = True) -> dict[str, Any]:
        """``args``, ``result_selector`` and ``result`` from Parameters, ResultSelector and
        ResultPath (and InputPath, which the paths are relative to); without
        ``store_result``, only the ``args``."""
        out: dict[str, Any] = {}
        if "Parameters" in self.data:
            out["args"] = self.template("Parameters", self.data["Parameters"], self.input)
            if self.empty_input and _reads_context(out["args"]):
                self.problem("Parameters", "InputPath null leaves no input for $ paths to read")
        elif whole_input and self.input is not None and self.input.segments:
            out["args"] = {"input.$": self.input.text}  # the task's input, as `input=`
        if not store_result:
            return out
        if "ResultSelector" in self.data:
            out["result_selector"] = self.template(
                "ResultSelector", self.data["ResultSelector"], None
            )
        out.update(self.result_path())
        return out

    def result_path(self) -> dict[str, Any]:
        path = self.data.get("ResultPath", CONTEXT)
        if path is None:
            return {}  # the result is discarded
        translated = self.path("ResultPath", path, relative_to_input=False)
        return {"result": translated}

    def retry(self) -> list[dict[str, Any]]:
        retriers = self.data.get("Retry")
        if retriers is None:
            return []
        if not isinstance(retriers, list):
            self.problem("Retry", "a list of retriers")
            return []
        policies = []
        for index, retrier in enumerate(retriers):
            loc = ("Retry", index)
            if not isinstance(retrier, Mapping):
                self.problem(loc, "a retrier is an object")
                continue
            self.allow_in(retrier, loc, "ErrorEquals", "IntervalSeconds", "MaxAttempts",
                          "BackoffRate", "MaxDelaySeconds", "JitterStrategy")  # fmt: skip
            policy: dict[str, Any] = {
                "max_attempts": retrier.get("MaxAttempts", 3) + 1,
                "interval_ms": retrier.get("IntervalSeconds", 1) * 1000,
                "backoff_rate": retrier.get("BackoffRate", 2.0),
            }
            if "MaxDelaySeconds" in retrier:
                policy["max_delay_ms"] = retrier["MaxDelaySeconds"] * 1000
            if retrier.get("JitterStrategy", "NONE") == "FULL":
                policy["jitter"] = "full"
            errors = self.errors((*loc, "ErrorEquals"), retrier.get("ErrorEquals"))
            if errors is not None:
                policy["errors"] = errors
            policies.append(policy)
        return policies

    def next_and_catch(
        self,
        outcome: str,
        *,
        catch: bool = True,
        assign: dict[str, Any] | None = None,
        must_leave: bool = False,
    ) -> dict[str, Any]:
        """``transitions``: ``outcome`` (storing ``assign``) to Next, or to an added terminal
        state after End when the state needs transitions (catchers, ``assign``,
        ``must_leave``), then one ``error`` transition per catcher."""
        catchers = self.data.get("Catch") if catch else None
        end = self.data.get("End") is True
        if end and "Next" in self.data:
            self.problem("End", "a state has Next or End, not both")
        errors = self.catchers(catchers) if catchers is not None else []
        if end and not (errors or assign or must_leave or self.output):
            return {}  # terminal: the execution ends when it is done
        target = self.end_state() if end else self.target("Next", self.data.get("Next"))
        success: dict[str, Any] = {"event": outcome, "target": target}
        if assign:
            success["assign"] = assign
        if self.output is not None:  # after the result is stored, as OutputPath comes last
            success["output"] = self.output
        return {"transitions": [success, *errors]}

    def catchers(self, catchers: Any) -> list[dict[str, Any]]:
        """One ``error`` transition per catcher, in order; a catcher's ``ResultPath`` keeps
        the error (``{"Error": ..., "Cause": ...}``) with ``assign``: at a top-level key, or,
        for the default ``$``, as the context's ``Error`` and ``Cause`` keys (Step Functions
        replaces the input with them; here the rest of the context stays)."""
        if not isinstance(catchers, list):
            self.problem("Catch", "a list of catchers")
            return []
        transitions = []
        for index, catcher in enumerate(catchers):
            loc = ("Catch", index)
            if not isinstance(catcher, Mapping):
                self.problem(loc, "a catcher is an object")
                continue
            self.allow_in(catcher, loc, "ErrorEquals", "Next", "ResultPath")
            transition: dict[str, Any] = {
                "event": "error",
                "target": self.target((*loc, "Next"), catcher.get("Next")),
            }
            errors = self.errors((*loc, "ErrorEquals"), catcher.get("ErrorEquals"))
            if errors is not None:
                transition["errors"] = errors
            path = catcher.get("ResultPath", CONTEXT)
            if path == CONTEXT:  # the error output replaces the input: its keys join it here
                transition["assign"] = dict(ERROR_OUTPUT)
            else:
                kept = self.stored_at((*loc, "ResultPath"), path, ERROR_OUTPUT)
                if kept:
                    transition["assign"] = kept
            transitions.append(transition)
        return transitions

    def stored_at(self, field: str | Loc, path: Any, value: Any) -> dict[str, Any] | None:
        """The ``assign`` that stores ``value`` (a template) at the ASL ``ResultPath``
        ``path``: ``None`` for ``null``; a top-level key only."""
        if path is None:
            return None
        try:
            parsed = relative(path, None)
        except Untranslatable as exc:
            self.problem(field, str(exc))
            return None
        if (
            parsed.root != CONTEXT
            or len(parsed.segments) != 1
            or not isinstance(parsed.segments[0], str)
        ):
            self.problem(field, f"only a top-level key ($.name) is translated here, not {path}")
            return None
        key = parsed.segments[0]
        if isinstance(value, str):
            return {f"{key}.$": value}
        return {key: value}

    def errors(self, loc: Loc, names: Any) -> list[str] | None:
        """A retrier's or catcher's ``ErrorEquals`` as procstore error names (``None``: all)."""
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.t.problem((*self.loc, *loc), "required: a non-empty list of error names")
            return []
        translated: list[str] = []
        for index, asl in enumerate(names):
            if asl in ERRORS_BY_ASL_NAME:
                ours = ERRORS_BY_ASL_NAME[asl]
                if ours is None:
                    return None
                translated.append(ours)
            elif asl.startswith("States."):
                self.t.problem((*self.loc, *loc, index), f"{asl} has no procstore counterpart")
            else:
                translated.append(asl)
        return translated

    def target(self, field: str | Loc, name: Any) -> str:
        if name not in self.names:
            self.problem(field, f"required: the name of a state of this machine, not {name!r}")
            return "missing"
        return self.names[name]

    def end_state(self, error: str | None = None) -> str:
        """The name of a terminal state added to this machine: a success, or a failure with
        ``error``."""
        base = END_STATE if error is None else "no_choice_matched"
        name, n = base, 1
        while name in self.names.values() or name in self.ends:
            n += 1
            name = f"{base}_{n}"
        self.ends[name] = {} if error is None else {"outcome": "failure", "error": error}
        return name

    def path(self, field: str, value: Any, *, relative_to_input: bool = True) -> str:
        try:
            return relative(value, self.input if relative_to_input else None).text
        except Untranslatable as exc:
            self.problem(field, str(exc))
            return CONTEXT

    def template(self, field: str, value: Any, input_path: DataPath | None) -> Any:
        translated, problems = template(value, input_path)
        for loc, message in problems:
            self.problem((field, *loc), message)
        return translated

    def allow(self, *fields: str) -> None:
        self.allow_in(self.data, (), "Type", "Comment", "InputPath", "OutputPath", *fields)

    def allow_in(self, data: Mapping[str, Any], loc: Loc, *fields: str) -> None:
        for key in data:
            if key not in fields:
                self.problem((*loc, key), f"{key} is not translated here")

    def problem(self, field: str | Loc, message: str) -> None:
        loc = (field,) if isinstance(field, str) else field
        self.t.problem((*self.loc, *loc), message)

    def _input_path(self) -> DataPath | None:
        if "InputPath" not in self.data:
            return None
        value = self.data["InputPath"]
        if value is None:  # the state's input is {}: it may read only constants and $$
            self.empty_input = True
            return None
        try:
            return relative(value, None)
        except Untranslatable as exc:
            self.problem("InputPath", str(exc))
            return None

    def _output_path(self) -> None:
        """OutputPath: the part of the state's output that becomes the context when it moves
        on (the success transition's ``output``); ``null`` (an empty output) is reported."""
        value = self.data.get("OutputPath", CONTEXT)
        if value == CONTEXT:
            return
        if value is None:
            self.problem("OutputPath", "OutputPath null (an empty output) is not translated")
            return
        if self.data.get("Type") in ("Choice", "Succeed"):
            self.problem("OutputPath", "OutputPath is translated on states that move on (Next)")
            return
        self.output = self.path("OutputPath", value, relative_to_input=False)


def _state_names(states: Mapping[str, Any]) -> dict[str, str]:
    """Each ASL state name → a procstore state name (a ``.`` would nest it: ``_`` instead)."""
    names: dict[str, str] = {}
    for asl in states:
        base = asl.replace(".", "_") or "_"
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base}_{n}"
        names[asl] = name
    return names


def _literal(value: Any) -> Any:
    """A constant (a Pass state's ``Result``) as a template that renders to itself: keys
    ending in ``.$`` are constants there, so they are kept out of the template."""
    if isinstance(value, Mapping):
        if any(isinstance(k, str) and k.endswith(".$") for k in value):
            raise_value = json.dumps(value)[:80]
            raise Untranslatable(
                f"a Result with keys ending in .$ is not translated: {raise_value}"
            )
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _reads_context(template: Any) -> bool:
    """Whether ``template`` has a ``.$`` path into the context (``$...``, not ``$$...``)."""
    if isinstance(template, Mapping):
        return any(
            (isinstance(k, str) and k.endswith(".$") and not str(v).startswith("$$"))
            or _reads_context(v)
            for k, v in template.items()
        )
    if isinstance(template, list):
        return any(_reads_context(item) for item in template)
    return False


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
