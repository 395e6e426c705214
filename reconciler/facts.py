"""Facts from outside the manifests: local files (does a path exist, what columns does a dataset
have, what family is a model), the Hugging Face Hub (a dataset's features, a model's family) and the
CML Model Registry (a registered model's MLflow experiment and run).

Pure values. `reconciler.localfiles`, `reconciler.online` and `reconciler.backends.cml_registry`
gather them (the I/O); rules and the planner only read them, so each stays a function of values and
is tested without disk or network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Refusal:
    """Why ftctl did not read a path a manifest names (`reconciler.safeio`): a catalog code and a
    message naming the path; nothing of it was read."""

    code: str
    message: str


@dataclass(frozen=True)
class PathFact:
    exists: bool
    is_dir: bool = False
    is_file: bool = False
    has_adapter_config: bool = False  # a PEFT adapter directory holds adapter_config.json
    refusal: Refusal | None = None  # set: the path (or a file in the folder) was not read, and why


@dataclass(frozen=True)
class TableFact:
    """Columns and row count of a local dataset file, or why they could not be read.

    `mean_chars` is a row's size in characters for cost estimates: a CSV row's values, a JSON
    object's values as text, a JSONL line's text (keys and quoting included: lines are not parsed).
    A file small enough to count averages all its rows; a file too large to count averages the rows
    of its bounded head (`localfiles.HEAD_BYTES`, whole lines; a JSON array's first object), nothing
    beyond it is read. The head's rows are the file's own, so their mean is a fair estimate of the
    whole file's; an estimate still needs `rows`, which only a counted file gives."""

    columns: tuple[str, ...] = ()
    rows: int | None = None  # None: not counted (file too large)
    error: str | None = None
    mean_chars: float | None = None  # None: no row to average


@dataclass(frozen=True)
class LocalFacts:
    paths: dict[str, PathFact] = field(default_factory=dict)
    tables: dict[str, TableFact] = field(default_factory=dict)
    # resolved local model directory -> `architectures[0]` of its config.json (the Studio's model family)
    model_families: dict[str, str] = field(default_factory=dict)
    # resolved local model directory -> its parameter count as its config.json gives it (`parameter_count`)
    model_parameters: dict[str, int] = field(default_factory=dict)

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
    # model repo id -> the commit the Hub served its config.json from (`X-Repo-Commit`): lineage's base revision
    model_revisions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredModelFact:
    """One registered model as `GET /registry/models/{id}` describes it; the MLflow ids are those of
    its first version (`model_versions[0].model_version_metadata.mlflow_metadata`), as the Studio
    reads them, '' when it has no version or the version names none."""

    name: str
    experiment_id: str = ""
    run_id: str = ""
    versions: int = 0  # how many versions the registry lists (0: the Studio's import fails on it)


@dataclass(frozen=True)
class RegistryFacts:
    """What the Studio reads from the CML Model Registry when it registers a model_registry Model or
    Adapter, keyed by registered model id (`cml_registered_model_id`, stripped).

    An id in neither mapping was not asked (offline, CML API not configured) or did not answer
    (server error, no connection): the value is unknown.
    """

    models: dict[str, RegisteredModelFact] = field(default_factory=dict)
    # ids the registry answered 404 to -> the registry's message
    missing: dict[str, str] = field(default_factory=dict)


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


def parameter_count(config: object) -> int | None:
    """A decoder's parameter count from its config.json, for cost estimates: per layer attention
    (q and o h x h, k and v h x kv-heads x head size) and MLP (3 h x i when gated, as Llama, Mistral,
    Qwen and Gemma are, else 2 h x i), plus the embeddings (twice when the output layer is not tied).
    Norms and biases are left out (well under 1%). None when the config lacks the sizes."""
    if not isinstance(config, dict):
        return None
    hidden, layers = _size(config, "hidden_size", "n_embd", "d_model"), _size(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _size(config, "vocab_size")
    if not (hidden and layers and vocab):
        return None
    inner = _size(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    heads = _size(config, "num_attention_heads", "n_head") or 1
    head_dim = _size(config, "head_dim") or hidden // heads
    kv_heads = _size(config, "num_key_value_heads") or heads
    gated = str(config.get("hidden_act", "")) in ("silu", "swiglu") or str(config.get("model_type", "")) in GATED_MODEL_TYPES
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = (3 if gated else 2) * hidden * inner
    tied = config.get("tie_word_embeddings", True) is not False
    return layers * (attention + mlp) + vocab * hidden * (1 if tied else 2)


GATED_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3")


def _size(config: dict[str, object], *keys: str) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


_SIZE_IN_NAME = re.compile(r"(?<![a-z0-9.])(\d+(?:[.]\d+)?)([bm])(\d*)(?![a-z])", re.IGNORECASE)


def parameters_from_name(name: str) -> int | None:
    """The parameter count a Hub model's name states, as model names do: `bloom-1b1` (1.1B),
    `Llama-3.1-8B-Instruct` (8B), `bloom-560m`, `Qwen2.5-0.5B`. None when the name states none."""
    found = _SIZE_IN_NAME.findall(name.rpartition("/")[2])
    if not found:
        return None
    number, unit, decimals = found[-1]
    value = float(f"{number}.{decimals}") if decimals and "." not in number else float(number)
    return int(value * (1e9 if unit.lower() == "b" else 1e6))
