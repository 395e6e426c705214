"""Which manifests a plan covers: `--target Kind/name` (with what it depends on, as Terraform's
-target), `-l key=value` label selectors (kubectl's), and which objects `--replace` names. A sweep's
address (`FineTuningJob/<job with a matrix>`) names all its trials (`groups`, from `sweeps.expand`);
a trial carries its sweep's labels, so a selector matching the sweep matches every trial.

Pure: parsed arguments, the manifests and their reference graph in; the selected manifests out.
Called by the engine before planning; the planner plans the selection and deletes nothing outside
it. Errors are `SelectionError`s of one line naming the argument (and a close known address).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.addresses import Address
from reconciler.graph import Graph, Node
from reconciler.manifests.loader import Manifest
from reconciler.plan import Selection


class SelectionError(ValueError):
    """A --target, -l or --replace argument that selects nothing it could plan."""


@dataclass(frozen=True)
class SelectArgs:
    """The selection flags of plan, apply, status and drift, as typed on the command line."""

    targets: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scoped:
    """What a plan covers: its manifests, the selection when it is partial, what to replace."""

    manifests: list[Manifest]
    partial: Selection | None
    replace: tuple[str, ...]


Groups = Mapping[Node, Sequence[Node]]  # a sweep -> its trials: one address naming several objects


def choose(manifests: list[Manifest], graph: Graph, args: SelectArgs, *, files: Sequence[str], prune: bool,
           groups: Groups | None = None) -> Scoped:
    """Apply the flags to the manifests read from `paths`; `files` are the paths that name files (not
    folders): a plan over them is partial, as one over targets or selectors is. Pruning needs the
    whole project (what a partial plan did not read cannot be judged unused). `groups`: the
    addresses that stand for several objects (a sweep for its trials) in --target and --replace."""
    groups = groups or {}
    targets = parse_addresses("--target", args.targets)
    selectors = tuple(dict.fromkeys(LabelSelector.parse(text) for text in args.selectors))
    chosen = select(manifests, graph, targets=targets, selectors=selectors, groups=groups)
    partial = Selection(tuple(files), tuple(map(str, targets)), tuple(map(str, selectors)))
    is_partial = bool(files or targets or selectors)
    if is_partial and prune:
        raise SelectionError(f"--prune needs the whole project, not a part of it ({partial.describe()}): "
                             "name the project's folder to prune")
    replace = parse_addresses("--replace", args.replace)
    covered = {(m.kind, m.name) for m in chosen}
    known("--replace", replace, [*covered, *(g for g, members in groups.items() if set(members) <= covered)],
          where="not among the objects this plan covers")
    replaced = [Address(*node) for a in replace for node in members_of(a, groups)]
    return Scoped(chosen, partial if is_partial else None, tuple(map(str, dict.fromkeys(replaced))))


def members_of(address: Address, groups: Groups) -> Sequence[Node]:
    """The objects an address names: a sweep's trials, else the object itself."""
    node = (address.kind, address.name)
    return groups.get(node) or (node,)


@dataclass(frozen=True)
class LabelSelector:
    """`key=value`, `key!=value` (absent counts as different) or `key` (the label is present)."""

    key: str
    op: str  # "=" | "!=" | "exists"
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        if "!=" in text:
            key, _, value = text.partition("!=")
            op = "!="
        elif "=" in text:
            key, _, value = text.partition("=")
            op = "="
        else:
            key, value, op = text, "", "exists"
        key = key.strip()
        if not key or any(c in key for c in "=! ") or (op != "exists" and not value.strip()):
            raise SelectionError(f"-l {text}: not a label selector (want key=value, key!=value or key)")
        return cls(key, op, value.strip())

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return self.key if self.op == "exists" else f"{self.key}{self.op}{self.value}"


def parse_addresses(flag: str, texts: Iterable[str]) -> tuple[Address, ...]:
    out = []
    for text in texts:
        try:
            out.append(Address.parse(text))
        except ValueError as exc:
            raise SelectionError(f"{flag} {text}: {exc}") from exc
    return tuple(dict.fromkeys(out))


def known(flag: str, addresses: Sequence[Address], nodes: Iterable[Node], *, where: str = "no manifest declares it") -> None:
    """Refuse an address that is not among `nodes`, with the closest one as a hint."""
    names = {f"{kind}/{name}" for kind, name in nodes}
    for address in addresses:
        if str(address) in names:
            continue
        close = difflib.get_close_matches(str(address), sorted(names), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SelectionError(f"{flag} {address}: {where}{hint}")


def select(
    manifests: Sequence[Manifest],
    graph: Graph,
    *,
    targets: Sequence[Address] = (),
    selectors: Sequence[LabelSelector] = (),
    groups: Groups | None = None,
) -> list[Manifest]:
    """The manifests named by `targets` (a sweep's: its trials) and those whose labels match every
    selector, with everything they reference (transitively, through the graph's edges). No targets
    and no selectors: all of them."""
    if not targets and not selectors:
        return list(manifests)
    groups = groups or {}
    known("--target", targets, [*graph.nodes, *groups])
    roots: set[Node] = {node for a in targets for node in members_of(a, groups)}
    if selectors:
        roots |= {(m.kind, m.name) for m in manifests if all(s.matches(m.resource.metadata.labels) for s in selectors)}
    chosen = closure(graph, roots)
    return [m for m in manifests if (m.kind, m.name) in chosen]


def closure(graph: Graph, roots: Iterable[Node]) -> set[Node]:
    """`roots` and every node they depend on, directly or through others."""
    seen: set[Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(graph.edges.get(node, ()))
    return seen
