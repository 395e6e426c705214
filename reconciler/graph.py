"""The reference graph between manifests: dependencies, waves, cycles.

Pure. An edge A -> B means A references B (B must exist first). A reference to an adapter that a
FineTuningJob trains is an edge to that job. `waves` orders objects for apply (Kahn's algorithm);
whatever it cannot order sits on or behind a cycle, which `find_cycles` names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from reconciler.manifests.loader import Manifest
from reconciler.models import FineTuningJob

# (field path inside spec, referenced kind) for every reference field of every kind.
REFERENCE_FIELDS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "Prompt": [(("dataset",), "Dataset")],
    "Config": [(("model",), "Model")],
    "Adapter": [(("model",), "Model"), (("fine_tuning_job",), "FineTuningJob"), (("prompt",), "Prompt")],
    "FineTuningJob": [
        (("base_model",), "Model"),
        (("dataset",), "Dataset"),
        (("prompt",), "Prompt"),
        *(((f,), "Config") for f in ("lora_config", "bnb_config", "adapter_bnb_config", "training_arguments", "axolotl_config", "user_config")),
    ],
    "EvaluationJob": [
        (("dataset",), "Dataset"),
        (("prompt",), "Prompt"),
        (("combinations", "*", "model"), "Model"),
        (("combinations", "*", "adapter"), "Adapter"),
        *(((f,), "Config") for f in ("generation_config", "bnb_config", "adapter_bnb_config")),
    ],
    "ModelExport": [
        (("base_model",), "Model"),
        (("adapter",), "Adapter"),
        (("gate", "evaluation"), "EvaluationJob"),
        (("select", "evaluation"), "EvaluationJob"),
        *(((f,), "Config") for f in ("generation_config", "bnb_config")),
    ],
}

Node = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: dict[Node, tuple[Node, ...]]

    @cached_property
    def order(self) -> tuple[list[list[Node]], set[Node]]:
        """`waves` of this graph, computed once (the cycle check and the planner both need it)."""
        return waves(self)


def name_references(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(kind, name) of every by-name reference a manifest makes."""
    spec = manifest.resource.spec
    for path, kind in REFERENCE_FIELDS.get(manifest.kind, []):
        if len(path) == 1:  # the common case, without the generic walk
            value = getattr(spec, path[0])
            if isinstance(value, str):
                yield kind, value
            continue
        for value in _values_at(spec, path):
            if isinstance(value, str):
                yield kind, value


def _values_at(obj: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield obj
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in obj or []:
            yield from _values_at(item, rest)
    elif obj is not None:
        yield from _values_at(getattr(obj, head, None), rest)


def build_graph(manifests: list[Manifest]) -> Graph:
    nodes = {(m.kind, m.name) for m in manifests}
    producers = {
        m.resource.adapter_name: (m.kind, m.name) for m in manifests if isinstance(m.resource, FineTuningJob)
    }
    edges: dict[Node, tuple[Node, ...]] = {}
    for m in manifests:
        deps: list[Node] = []
        for kind, name in name_references(m):
            if (kind, name) in nodes:
                deps.append((kind, name))
            elif kind == "Adapter" and name in producers:
                deps.append(producers[name])
        edges[(m.kind, m.name)] = tuple(dict.fromkeys(deps))
    return Graph(tuple(sorted(nodes)), edges)


def waves(graph: Graph) -> tuple[list[list[Node]], set[Node]]:
    """Objects in dependency order, as waves that can run side by side; and those left on cycles."""
    remaining = {n: set(graph.edges.get(n, ())) for n in graph.nodes}  # a self-reference never gets ready
    dependants: dict[Node, list[Node]] = {}
    for node, deps in remaining.items():
        for dep in deps:
            dependants.setdefault(dep, []).append(node)
    ready = sorted(n for n, deps in remaining.items() if not deps)
    out: list[list[Node]] = []
    done: set[Node] = set()
    while ready:
        out.append(ready)
        done.update(ready)
        nxt = set()
        for node in ready:
            for dependant in dependants.get(node, []):
                remaining[dependant].discard(node)
                if not remaining[dependant] and dependant not in done:
                    nxt.add(dependant)
        ready = sorted(nxt)
    return out, set(graph.nodes) - done


def find_cycles(graph: Graph) -> list[list[Node]]:
    """Each distinct cycle once, as the list of nodes along it, starting from its smallest node."""
    _, stuck = graph.order
    cycles: list[list[Node]] = []
    covered: set[Node] = set()
    for start in sorted(stuck):
        if start in covered:
            continue
        path: list[Node] = []
        index: dict[Node, int] = {}
        node: Node | None = start
        while node is not None and node not in index:
            index[node] = len(path)
            path.append(node)
            node = next((d for d in graph.edges.get(node, ()) if d in stuck), None)
        if node is None:
            continue
        cycle = path[index[node]:]
        if not covered.intersection(cycle):
            pivot = cycle.index(min(cycle))
            cycles.append(cycle[pivot:] + cycle[:pivot])
        covered.update(cycle)
    return cycles
