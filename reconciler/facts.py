"""Facts from outside the manifests: local files (does a path exist, what columns does a dataset
have, what family is a model) and the Hugging Face Hub (a dataset's features, a model's family).

Pure values. `reconciler.localfiles` and `reconciler.online` gather them (the I/O); rules and the
planner only read them, so each stays a function of values and is tested without disk or network.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PathFact:
    exists: bool
    is_dir: bool = False
    is_file: bool = False
    has_adapter_config: bool = False  # a PEFT adapter directory holds adapter_config.json


@dataclass(frozen=True)
class TableFact:
    """Columns and row count of a local dataset file, or why they could not be read."""

    columns: tuple[str, ...] = ()
    rows: int | None = None  # None: not counted (file too large)
    error: str | None = None


@dataclass(frozen=True)
class LocalFacts:
    paths: dict[str, PathFact] = field(default_factory=dict)
    tables: dict[str, TableFact] = field(default_factory=dict)
    # resolved local model directory -> `architectures[0]` of its config.json (the Studio's model family)
    model_families: dict[str, str] = field(default_factory=dict)

    def path(self, path: str) -> PathFact:
        return self.paths.get(path, PathFact(exists=False))


@dataclass(frozen=True)
class HubFacts:
    """What the Studio reads from the Hub when it registers a resource, keyed by repo id.

    A repo missing from a mapping was not asked (offline, token variable unset) or did not answer
    with it (missing repo, no features in its card, no config.json): the value is unknown.
    """

    # dataset repo id -> feature (column) names, in the card's order (`info.features.keys()`)
    dataset_features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # dataset repo id -> description (`info.description`)
    dataset_descriptions: dict[str, str] = field(default_factory=dict)
    # model repo id -> `architectures[0]` of the repo's config.json (`AutoConfig(...).architectures[0]`)
    model_families: dict[str, str] = field(default_factory=dict)


def model_family(config: object) -> str | None:
    """The model family the Studio records: the first of a parsed config.json's `architectures`,
    when it is a non-empty string (`AutoConfig.from_pretrained(...).architectures[0]`)."""
    if not isinstance(config, dict):
        return None
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        return None
    first = architectures[0]
    return first if isinstance(first, str) and first.strip() else None
