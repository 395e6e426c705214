"""Pairing, the planner's first step: each object's manifest beside ftctl's record of it, and one
decision per pair.

Pure. `pair_manifests` gives a `Pair` for every manifest, in the order the planner decides them (by
wave of the reference graph; objects in a reference cycle last); `orphans` gives one for every
managed object no manifest declares, in deletion order (what uses others first). `decide` is the
one place that says what a pair's shape means: create, adopt, replace on request, noop, compare
(update / replace / re-create / noop, by the columns), delete, or keep as an orphan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler.graph import Graph
from reconciler.live import ManagedRecord
from reconciler.manifests.loader import Manifest

Key = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Pair:
    """One object: its manifest (None: no manifest declares it any more) and the record ftctl keeps
    of it (None: not managed yet; an adoption record when the manifest names an unmanaged row)."""

    kind: str
    name: str
    manifest: Manifest | None
    record: ManagedRecord | None
    wave: int = 0
    adopting: bool = False  # `record` is made for a Studio row the manifest adopts (ftctl.io/store-id)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


class Decision(StrEnum):
    CREATE = "create"
    ADOPT = "adopt"
    REPLACE = "replace"  # requested (`--replace`), whatever changed
    NOOP = "noop"  # in sync, known without comparing further
    COMPARE = "compare"  # update, replace, re-create or noop: the columns decide
    DELETE = "delete"
    ORPHAN = "orphan"  # kept: `--prune` is off


def pair_manifests(manifests: Iterable[Manifest], managed: Mapping[Key, ManagedRecord], graph: Graph) -> list[Pair]:
    """Each manifest with its managed record, wave by wave."""
    by_key = {(m.kind, m.name): m for m in manifests}
    ordered, stuck = graph.order
    waves = [(node, wave_no) for wave_no, wave in enumerate(ordered) for node in wave]
    waves += [(node, len(ordered)) for node in sorted(stuck)]
    return [Pair(kind, name, by_key[(kind, name)], managed.get((kind, name)), wave) for (kind, name), wave in waves]


def orphans(manifests: Iterable[Manifest], managed: Mapping[Key, ManagedRecord], delete_rank: Mapping[str, int]) -> list[Pair]:
    """Each managed object no manifest declares, what uses others first (`delete_rank`, then name)."""
    wanted = {(m.kind, m.name) for m in manifests}
    found = [r for key, r in managed.items() if key not in wanted]
    found.sort(key=lambda r: (delete_rank.get(r.kind, 99), r.name))
    return [Pair(r.kind, r.name, None, r) for r in found]


def decide(pair: Pair, *, prune: bool, forced: bool, in_sync: bool) -> Decision:
    """What a pair's shape asks for. `forced`: its address is in `--replace`; `in_sync`: its owned
    columns equal the store's (the cheap check, made only for managed objects)."""
    match pair:
        case Pair(manifest=None) if prune:
            return Decision.DELETE
        case Pair(manifest=None):
            return Decision.ORPHAN
        case Pair(record=None):
            return Decision.CREATE
        case Pair(adopting=True):
            return Decision.ADOPT
        case _ if forced:
            return Decision.REPLACE
        case _ if in_sync:
            return Decision.NOOP
        case _:
            return Decision.COMPARE
