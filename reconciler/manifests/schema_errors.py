"""Turning pydantic validation errors into diagnostics with field paths and "did you mean" hints.

Pure: takes the model class and pydantic's error dicts, returns diagnostics without positions (and,
for `salvage`, the fields the errors name).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union

from pydantic import BaseModel

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, Location
from reconciler.secrets import holds_secret, is_secret_key


def schema_diagnostics(
    model: type[BaseModel], errors: list[Any], location: Location, address: str
) -> list[Diagnostic]:
    seen: set[tuple[str | int, ...]] = set()
    out: list[Diagnostic] = []
    for err in errors:
        path, union_collapsed = _clean_path(model, tuple(err["loc"]))
        if path in seen:
            continue
        seen.add(path)
        out.append(_one(model, err, path, union_collapsed, location.at(*path), address))
    return out


def error_paths(model: type[BaseModel], errors: list[Any]) -> list[tuple[tuple[str | int, ...], bool]]:
    """Each error's field path as its diagnostic names it, and whether a required key is missing
    there (the path then ends in that key); `salvage` leaves these fields out."""
    out = []
    for err in errors:
        path, union_collapsed = _clean_path(model, tuple(err["loc"]))
        out.append((path, err["type"] == "missing" and not union_collapsed))
    return out


def _one(
    model: type[BaseModel],
    err: Any,
    path: tuple[str | int, ...],
    union_collapsed: bool,
    location: Location,
    address: str,
) -> Diagnostic:
    field = _dotted(path)
    kind = err["type"]
    if kind == "extra_forbidden" and not union_collapsed:
        key = str(path[-1])
        known = _field_names(model, path[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if is_secret_key(key):
            return make_diag("SC-004", f"{field} holds a secret written into the manifest; secrets must be named, never written", location=location, address=address)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known fields here: {', '.join(sorted(known))}."
        return make_diag("SC-001", f"unknown field {field!r}", location=location, address=address, hint=hint)
    if kind == "missing" and not union_collapsed:
        return make_diag("SC-003", f"required field {field!r} is missing", location=location, address=address)
    if union_collapsed:
        message = f"{field}: {_expected_for_union(model, path)}"
    else:
        message = f"{field}: {err['msg']}"
    return make_diag(
        "SC-002", f"{message} (got {_preview(err.get('input'), path)})", location=location, address=address
    )


def _preview(value: Any, path: tuple[str | int, ...]) -> str:
    """A short repr of the value; none of a value at a secret-looking key or one that holds a secret."""
    if any(is_secret_key(part) for part in path) or holds_secret(value):
        return "a value not shown: it may be a secret"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _members(annotation: Any) -> list[Any]:
    """Flatten Optional/Union into member types."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _clean_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[str | int, ...], bool]:
    """Drop pydantic's union-member tags from a loc; report whether the path ended in a union."""
    current: list[Any] = [model]
    path: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            current = [a for tp in current for a in _container_items(tp)]
            path.append(part)
            continue
        next_types: list[Any] = []
        found = False
        for tp in current:
            if _is_model(tp) and part in tp.model_fields:
                next_types.extend(_members(tp.model_fields[part].annotation))
                found = True
            elif typing.get_origin(tp) is dict:
                next_types.extend(_members(typing.get_args(tp)[1]))
                found = True
        if not found:
            if len([t for t in current if t is not type(None)]) > 1:
                return tuple(path), True
            path.append(part)
            return tuple(path), False
        current = next_types
        path.append(part)
    return tuple(path), False


def _container_items(tp: Any) -> list[Any]:
    if typing.get_origin(tp) is list:
        return _members(typing.get_args(tp)[0])
    return []


def _types_at(model: type[BaseModel], path: tuple[str | int, ...]) -> list[Any]:
    current: list[Any] = [model]
    for part in path:
        if isinstance(part, int):
            current = [a for tp in current for a in _container_items(tp)]
        else:
            current = [
                a
                for tp in current
                if _is_model(tp) and part in tp.model_fields
                for a in _members(tp.model_fields[part].annotation)
            ]
    return current


def _field_names(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    return sorted({name for tp in _types_at(model, path) if _is_model(tp) for name in tp.model_fields})


def _expected_for_union(model: type[BaseModel], path: tuple[str | int, ...]) -> str:
    names = []
    for tp in _types_at(model, path):
        if tp is str:
            names.append("a name (string)")
        elif _is_model(tp) and tp.__name__ == "IdRef":
            names.append("{id: UUID}")
        elif typing.get_origin(tp) is dict:
            names.append("an inline mapping")
        elif tp is not type(None):
            names.append(getattr(tp, "__name__", str(tp)))
    return "expected " + " or ".join(names)
