"""A best-effort model of a document that failed the schema, so the rules still check what parsed.

The loader reports a document's schema errors (SC-001...) and then calls `salvage`: the fields the
errors name are left out (a typo'd key, a value of the wrong type, a list with a bad item, a mapping
missing a required key), the rest is validated again, and the result is the model of the fields that
were valid plus the paths that were left out. The rules run on that model; a diagnostic at or under
a left-out path is dropped (`reconciler.rules.check_all`), so a field that failed the schema is never
also reported as missing by a rule. A typo'd key's intended field is simply absent, as it is when the
user reads the file: a rule that requires that field fires, in the same run as the SC-001.

Pure: a document and pydantic's errors in, a model (or None: nothing safe to check) out. The
document is never modified: mappings along a removed path are copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from reconciler.diagnostics import FieldPath
from reconciler.manifests.schema_errors import error_paths
from reconciler.models import Resource

# Rounds of "leave out what failed, validate again": one is almost always enough; a removal can
# uncover an error only where the removed field was required (then the mapping above it goes).
MAX_ROUNDS = 8


def salvage(model: type[Resource], doc: Mapping[str, Any], errors: list[Any]) -> tuple[Resource | None, frozenset[FieldPath]]:
    """The model built from `doc` without the fields `errors` name, and the paths left out; (None,
    ...) when the envelope itself failed (metadata or spec missing or not a mapping)."""
    left_out: set[FieldPath] = set()
    current: Any = doc
    for _ in range(MAX_ROUNDS):
        targets = {_target(path, missing) for path, missing in error_paths(model, errors)}
        if () in targets:  # the document itself, or a top-level field it requires
            return None, frozenset(left_out)
        current = _without(current, targets)
        if current is None:
            return None, frozenset(left_out)
        left_out |= targets
        try:
            return model.model_validate(current), frozenset(left_out)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
    return None, frozenset(left_out)


def _target(path: FieldPath, missing: bool) -> FieldPath:
    """The field to leave out for an error at `path`: the field itself, the mapping that misses a
    required key, and for an item of a list the whole list (removing one item would shift the
    positions the rules report for the items after it)."""
    target = path[:-1] if missing else path
    while target and isinstance(target[-1], int):
        target = target[:-1]
    return target


def _without(doc: Any, paths: set[FieldPath]) -> Any:
    """`doc` without the keys at `paths`, each container on the way copied once (a document may
    have 300,000 unknown keys); None when a path does not lead to a key of a mapping."""
    here = {p[0] for p in paths if len(p) == 1}
    deeper: dict[str | int, set[FieldPath]] = {}
    for path in paths:
        if len(path) > 1 and path[0] not in here:
            deeper.setdefault(path[0], set()).add(path[1:])
    out: Any
    if isinstance(doc, Mapping):
        if any(not isinstance(key, str) or key not in doc for key in here | deeper.keys()):
            return None
        out = {k: v for k, v in doc.items() if k not in here}
    elif isinstance(doc, list) and not here and all(isinstance(i, int) and 0 <= i < len(doc) for i in deeper):
        out = list(doc)
    else:
        return None
    for key, rest in deeper.items():
        inner = _without(doc[key], rest)
        if inner is None:
            return None
        out[key] = inner
    return out
