"""What the Studio's store holds, as plain values: `LiveObject`s in a frozen `Snapshot`.

The store module reads a snapshot once; rules and (later) the planner take it as a value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LiveObject:
    kind: str
    id: str
    name: str
    type: str = ""
    model_id: str = ""  # adapters: the base model; jobs: base_model_id
    dataset_id: str = ""  # prompts and jobs
    features: str = ""  # datasets: JSON list of column names

    def feature_list(self) -> list[str] | None:
        try:
            value = json.loads(self.features) if self.features else None
        except ValueError:
            return None
        return [str(v) for v in value] if isinstance(value, list) else None


@dataclass(frozen=True)
class Snapshot:
    objects: tuple[LiveObject, ...] = ()
    source: str = ""
    _by_id: dict[str, LiveObject] = field(default_factory=dict, compare=False, repr=False)
    _by_name: dict[tuple[str, str], list[LiveObject]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for obj in self.objects:
            self._by_id[obj.id] = obj
            self._by_name.setdefault((obj.kind, obj.name), []).append(obj)

    def by_id(self, object_id: str) -> LiveObject | None:
        return self._by_id.get(object_id)

    def by_name(self, kind: str, name: str) -> list[LiveObject]:
        return self._by_name.get((kind, name), [])
