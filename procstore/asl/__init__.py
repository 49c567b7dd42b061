"""Amazon States Language (Step Functions) definitions imported as procstore procedures.

`import_asl` turns an ASL state machine (a ``dict``, or its JSON text) into a procedure
document that `ProcedureStore.register` takes; ``procstore import-asl FILE`` does the same from
the command line. Each ASL state becomes its procstore counterpart (see docs/coming-from.md for
the table): Task → a ``function`` action, Choice → a ``choice`` state, Wait → a ``wait`` state,
Pass → a ``noop`` action with ``args``, Succeed and Fail → terminal states, Parallel → a
parallel state, Retry → ``retry`` policies, Catch → ``error`` transitions, TimeoutSeconds →
``timeout_ms``, Parameters / ResultSelector / ResultPath → ``args`` / ``result_selector`` /
``result``.

Nothing is dropped silently: what has no counterpart is an `AslNotTranslated` problem, with
the ASL path of the field (``$.States.Charge.HeartbeatSeconds``), and no document is returned.

Task resources name code through a *resource map*: a JSON object from each ``Resource`` (an
ARN, or a ``${...}`` placeholder as a CDK or SAM template writes it; ``"*"`` is the default
for the others) to a procstore action: ``"module:function"`` (the module must still be
allowed by the store that registers the procedure) or the name of an action registered with
``store.register_action``. Without a map, or for a resource it does not name, the resource
itself is taken as the registered action's name.
"""

from __future__ import annotations

from procstore.asl.translate import AslNotTranslated, import_asl

__all__ = ["AslNotTranslated", "import_asl"]
