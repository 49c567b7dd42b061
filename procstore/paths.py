"""State paths: how nested states are named and how a transition's target is resolved.

A nested state is named by its dotted path from the top (`fulfilment.packing`); a region of a
parallel state is a path component too (`checks.credit.run`). State names may not contain
`.`, so a path splits unambiguously.
"""

from __future__ import annotations

from collections.abc import Collection

#: What separates the components of a state path (also the machine's nested-state separator).
SEPARATOR = "."


def join(parent: str | None, name: str) -> str:
    """The path of child `name` of `parent` (`None` is the top)."""
    return name if parent is None else f"{parent}{SEPARATOR}{name}"


def parent_of(path: str) -> str | None:
    """The path one level up, or `None` for a top-level state."""
    head, sep, _ = path.rpartition(SEPARATOR)
    return head if sep else None


def depth(path: str) -> int:
    """How deep `path` is nested: 1 for a top-level state."""
    return path.count(SEPARATOR) + 1


def is_within(path: str, ancestor: str) -> bool:
    """Whether `path` is `ancestor` or lies inside it."""
    return path == ancestor or path.startswith(ancestor + SEPARATOR)


def resolve_target(source: str, target: str, paths: Collection[str]) -> str:
    """Resolve `target` as written in a transition of state `source`.

    A dotted target is a full path. A plain name is a sibling of `source` or a top-level
    state; when both exist it is ambiguous.

    Raises:
        ValueError: the target names no state, or is ambiguous; the message says which.
    """
    if SEPARATOR in target:
        if target in paths:
            return target
        raise ValueError(f"{target!r} is not a state path")
    sibling = join(parent_of(source), target)
    candidates = {p for p in (sibling, target) if p in paths}
    if len(candidates) == 2:
        raise ValueError(
            f"{target!r} is ambiguous: both the sibling {sibling!r} and the top-level state "
            f"{target!r} exist; write the full path"
        )
    if not candidates:
        raise ValueError(f"{target!r} is not among the states reachable by name from {source!r}")
    return candidates.pop()


def crossed_region(source: str, target: str, parallels: Collection[str]) -> str | None:
    """The parallel state whose regions a transition from `source` to `target` would cross,
    or `None`. `parallels` holds the paths of the parallel states.

    Only one parallel state can be crossed: the deepest common ancestor of `source` and
    `target`, when both lie strictly inside it (their paths part right below it, in two of its
    regions). So this costs the length of the paths, whatever the number of parallel states.
    """
    src, dst = source.split(SEPARATOR), target.split(SEPARATOR)
    common = 0
    for a, b in zip(src, dst, strict=False):
        if a != b:
            break
        common += 1
    if common == 0 or common >= min(len(src), len(dst)):
        return None  # no common ancestor, or one path contains the other
    ancestor = SEPARATOR.join(src[:common])
    return ancestor if ancestor in parallels else None
