"""Lineage: where a job's output comes from, as ftctl records it for every job it launches.

Each job input carries a `lineage` block (`contract.Lineage`): the git commit of the manifests'
repository, the digest of the dataset's content, the base model's revision, a digest per config
body, the ftctl version, the digest of the input itself, and the reuse key (`reuse_key`: the input's
digest with the data's and the base's identities). The executor writes it into `ftctl_lineage` when
it launches the job (`LineageRecord`, read back into the snapshot); runners log it as MLflow tags on
their runs and registered versions, so ftctl's tables and MLflow carry the same digests.

A job's identity (its name, `jobinput.input_digest`) leaves the block out: a new commit or ftctl
version never renames a job or relaunches one that ran. What the job computes from is in the reuse
key: a dataset whose bytes changed under the same path gives another key.

Values only (below the planner's layers, so the snapshot holds `LineageRecord`s); `reuse` builds
the block and decides on it. `Provenance` is gathered by the engine (git, the dataset files it read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import __version__

UNKNOWN = "unknown"
CONFIG_KEYS = ("lora_config", "training_arguments", "bnb_config", "adapter_bnb_config", "axolotl_config", "generation_config")
LINEAGE_KEY = "lineage"


@dataclass(frozen=True)
class Provenance:
    """What the planner knows of the manifests' origin: the commit (`<sha>`, `<sha>-dirty` for a
    work tree with uncommitted changes, `unknown` outside git), and digests of the data it read."""

    commit: str = UNKNOWN
    dataset_digests: Mapping[str, str] = field(default_factory=dict)  # a project dataset's location -> sha256 of its bytes
    model_revisions: Mapping[str, str] = field(default_factory=dict)  # a model's name_or_path -> its revision
    ftctl_version: str = __version__


@dataclass(frozen=True)
class LineageRecord:
    """One `ftctl_lineage` row: a job ftctl launched (or a generation that reused one: `reused_from`)."""

    kind: str  # FineTuningJob | EvaluationJob | ModelExport
    name: str
    generation: int
    job_name: str  # the job that ran (for a reuse: the earlier job whose output it took)
    job_kind: str = ""  # train | evaluate | export
    row: str = ""  # `table/id` of the Studio row recording the job
    input_digest: str = ""
    reuse_key: str = ""
    commit: str = UNKNOWN
    dataset_digest: str = UNKNOWN
    base_revision: str = UNKNOWN
    config_digests: Mapping[str, str] = field(default_factory=dict)
    ftctl_version: str = ""
    estimate: Mapping[str, Any] = field(default_factory=dict)  # what the plan estimated at launch (GPU-hours, cost), when it did
    at: float = 0.0  # when it was launched (or the reuse applied)
    reused_from: str = ""  # the earlier generation's job this generation reused ('' when it ran its own)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    def digests(self) -> dict[str, str]:
        """The digests it records, by the names MLflow tags carry them (`tags`)."""
        return {"input_digest": self.input_digest, "reuse_key": self.reuse_key, "dataset_digest": self.dataset_digest,
                "base_revision": self.base_revision, "commit": self.commit, "ftctl_version": self.ftctl_version,
                **{f"config_digest.{k}": v for k, v in sorted(self.config_digests.items())}}


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def config_digests(document: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of each config body the job computes with (its `train`, `evaluate` or `export` block)."""
    out: dict[str, str] = {}
    for block in ("train", "evaluate", "export"):
        body = document.get(block)
        if isinstance(body, Mapping):
            out.update({key: _sha(body[key]) for key in CONFIG_KEYS if body.get(key) not in (None, {}, "")})
    return out


def dataset_digest(document: Mapping[str, Any], provenance: Provenance) -> str:
    dataset = document.get("dataset")
    if not isinstance(dataset, Mapping):
        return UNKNOWN
    return provenance.dataset_digests.get(str(dataset.get("name_or_path") or ""), UNKNOWN)


def base_revision(document: Mapping[str, Any], provenance: Provenance) -> str:
    model = document.get("model")
    if not isinstance(model, Mapping):
        return UNKNOWN
    return provenance.model_revisions.get(str(model.get("name_or_path") or ""), UNKNOWN)


def of_input(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """A job input's lineage block ({} for an input written before ftctl recorded lineage)."""
    block = document.get(LINEAGE_KEY)
    return block if isinstance(block, Mapping) else {}


def launch_record(kind: str, name: str, generation: int, *, job_name: str, job_kind: str, row: str,
                  document: Mapping[str, Any], at: float, estimate: Mapping[str, Any] | None = None) -> LineageRecord:
    """The `ftctl_lineage` row of a job as launched, from its input's lineage block."""
    block = of_input(document)
    return LineageRecord(
        kind, name, generation, job_name, job_kind, row, str(block.get("input_digest") or ""), str(block.get("reuse_key") or ""),
        str(block.get("commit") or UNKNOWN), str(block.get("dataset_digest") or UNKNOWN), str(block.get("base_revision") or UNKNOWN),
        dict(block.get("config_digests") or {}), str(block.get("ftctl_version") or ""), dict(estimate or {}), at)
