"""Use-cases: wiring the pure core (loader, rules) to the I/O edges (files, store, Hub).

`validate` is what `ftctl validate` runs. The CLI parses arguments and renders; this module
decides what to read and in which order, and returns values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.diagnostics import Diagnostic
from reconciler.live import Snapshot
from reconciler.localfiles import gather_facts
from reconciler.manifests import Manifest, load_paths, resolve_positions
from reconciler.manifests.cache import ParseCache
from reconciler.rules import RuleContext, check_all


class EngineError(Exception):
    """An operational failure (not a problem in the manifests): unreadable store, missing schemas."""


@dataclass(frozen=True)
class ValidationReport:
    diagnostics: list[Diagnostic]
    manifests: list[Manifest]
    files: list[str]
    documents: int

    def has_errors(self) -> bool:
        return any(d.severity.is_error() for d in self.diagnostics)


def schemas_dir() -> Path:
    """The committed schemas/ folder (beside the package in a checkout or editable install)."""
    override = os.environ.get("FTCTL_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


def load_body_schemas(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Config-body JSON Schemas by config type; missing files mean those bodies go unchecked."""
    folder = (folder or schemas_dir()) / "config-bodies"
    out: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.schema.json")):
            out[path.name.removesuffix(".schema.json")] = json.loads(path.read_text(encoding="utf-8"))
    return out


def read_store(store: str | None) -> Snapshot | None:
    if store is None:
        return None
    from reconciler.store import read_snapshot
    from reconciler.store.read import StoreError

    try:
        return read_snapshot(store)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc


def validate(
    paths: Sequence[str],
    *,
    offline: bool,
    store: str | None = None,
    environ: Mapping[str, str] | None = None,
    use_cache: bool = True,
) -> ValidationReport:
    loaded = load_paths(paths, cache=ParseCache.for_inputs(paths) if use_cache else None)
    ctx = RuleContext(
        loaded.manifests,
        facts=gather_facts(loaded.manifests),
        snapshot=read_store(store),
        body_schemas=load_body_schemas(),
    )
    diagnostics = loaded.diagnostics + check_all(ctx)
    diagnostics += _online(loaded.manifests, offline=offline, environ=os.environ if environ is None else environ)
    diagnostics = resolve_positions(diagnostics, loaded.sources)
    return ValidationReport(sorted(diagnostics, key=Diagnostic.sort_key), loaded.manifests, loaded.files, loaded.documents)


def _online(manifests: list[Manifest], *, offline: bool, environ: Mapping[str, str]) -> list[Diagnostic]:
    from reconciler.online.hub import check_hub

    return check_hub(manifests, environ=environ, offline=offline)
