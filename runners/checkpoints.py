"""Training checkpoints in the job's folder, and where a retried training resumes from.

A training saves a checkpoint (the adapter, optimizer, scheduler, RNG and trainer state, as the
Hugging Face Trainer saves them) into `<job dir>/checkpoints/checkpoint-<step>/` every
`save_steps` steps of its `training_arguments` (default CHECKPOINT_STEPS), keeping the last
`save_total_limit` (default CHECKPOINT_KEEP) so the disk stays bounded; `save_strategy: "no"`
turns them off, `save_strategy: epoch` saves at each epoch's end. After each save, rank 0 writes
`ftctl-checkpoint.json` into the checkpoint: the step, the digest of the job input it was made
from, and the MLflow run it logs to. A checkpoint without that file is incomplete (the job died
while saving it) and is never resumed from.

The job's folder outlives its attempts (a retry runs under the same job name, in the same folder;
the local backend archives only the previous attempt's log, progress and result), so a retried
training finds the checkpoints of the attempt that was killed. It resumes from the last complete
one when that checkpoint was made from this very input (same digest), and otherwise starts over,
removing them and saying why (`Resume.note`, printed to the job log and kept in the result).

Stdlib only at import; the Trainer callback imports transformers when it is made. Never imports ftctl.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_STEPS = 100  # save every this many optimizer steps unless training_arguments.save_steps says otherwise
CHECKPOINT_KEEP = 2  # the last this many checkpoints are kept (save_total_limit); older ones are deleted
FOLDER = "checkpoints"  # under the job's folder (outputs.dir)
MARKER = "ftctl-checkpoint.json"
NAMED_KEYS = ("job_name", "outputs", "tracking", "lineage")  # follow from the job's name and machine: not what it computes from
_STEP = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class Resume:
    """Where a training starts: from a checkpoint (`checkpoint`, at `step`), or from the start."""

    checkpoint: Path | None = None
    step: int = 0
    mlflow_run_id: str | None = None
    note: str = "no checkpoint: training from the start"

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None


def folder(out_dir: str | Path) -> Path:
    return Path(out_dir) / FOLDER


def input_digest(job: dict[str, Any]) -> str:
    """SHA-256 of the job input less what follows from its name or machine (NAMED_KEYS): two
    attempts of one job have the same digest; an input changed in what it trains has another (a
    secret a config references counts by its value: a rotated one starts the training over)."""
    body = {k: v for k, v in job.items() if k not in NAMED_KEYS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def trainer_settings(args: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """The SFTConfig checkpoint settings: the config's save_strategy / save_steps / save_total_limit,
    with the defaults above; always into the job's checkpoints folder."""
    strategy = str(args.get("save_strategy") or "steps")
    settings: dict[str, Any] = {"save_strategy": strategy, "output_dir": str(folder(out_dir))}
    if strategy == "no":
        return settings
    settings["save_total_limit"] = int(args.get("save_total_limit") or CHECKPOINT_KEEP)
    if strategy == "steps":
        settings["save_steps"] = args.get("save_steps") or CHECKPOINT_STEPS
    return settings


def enabled(settings: dict[str, Any]) -> bool:
    return str(settings.get("save_strategy")) != "no"


def complete(where: Path) -> list[tuple[int, Path, dict[str, Any]]]:
    """(step, folder, marker) of each complete checkpoint in `where`, oldest first."""
    found = []
    for entry in where.glob("checkpoint-*") if where.is_dir() else ():
        match = _STEP.fullmatch(entry.name)
        marker = _read(entry / MARKER)
        if match and marker and (entry / "trainer_state.json").is_file():
            found.append((int(match.group(1)), entry, marker))
    return sorted(found, key=lambda item: item[0])


def resume_point(where: str | Path, digest: str, *, enabled: bool = True) -> Resume:
    """Where this training starts, given its checkpoints folder and its input's digest.

    Resumes from the last complete checkpoint made from this input; checkpoints of another input
    are removed (they cannot be resumed from, and would be mixed with this run's), and the note
    says so."""
    where = Path(where)
    found = complete(where)
    finished = {entry for _, entry, _ in found}
    for entry in where.glob("checkpoint-*") if where.is_dir() else ():
        if entry not in finished:  # the job died while saving it
            shutil.rmtree(entry, ignore_errors=True)
    if not found:
        return Resume()
    step, last, marker = found[-1]
    if not enabled:
        return Resume(note=f"checkpoints are off (save_strategy: no): training from the start, not from step {step}")
    if marker.get("input_digest") != digest:
        for entry in where.glob("checkpoint-*"):
            shutil.rmtree(entry, ignore_errors=True)
        return Resume(note=f"started over: the checkpoint at step {step} was made from another job input "
                           f"(digest {str(marker.get('input_digest'))[:12]}, this input {digest[:12]}); removed it")
    return Resume(last, step, marker.get("mlflow_run_id") or None, f"resumed at step {step} from {last.name}")


def epoch(resume: Resume) -> float:
    """The epoch a resumed training starts at (its checkpoint's trainer state); 0 from the start."""
    if resume.checkpoint is None:
        return 0.0
    return float(_read(resume.checkpoint / "trainer_state.json").get("epoch") or 0.0)


def mark(checkpoint: Path, step: int, digest: str, mlflow_run_id: str | None) -> None:
    """Record that `checkpoint` is complete, with the input it was made from (written last, atomically)."""
    tmp = checkpoint / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"step": step, "input_digest": digest, "mlflow_run_id": mlflow_run_id}), encoding="utf-8")
    os.replace(tmp, checkpoint / MARKER)


def callback(digest: str, mlflow_run_id: str | None, on_saved: Any = None) -> Any:
    """A TrainerCallback that marks each checkpoint complete after the Trainer saved it (rank 0 only),
    then calls `on_saved(step)` (the runner reports the step in its progress)."""
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if saved.is_dir():
                mark(saved, state.global_step, digest, mlflow_run_id)
                if on_saved is not None:
                    on_saved(state.global_step)

    return CheckpointMarker()


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
