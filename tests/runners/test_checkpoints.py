"""Where a training resumes (runners/checkpoints.py): from the last complete checkpoint of the same
input; from the start, saying why, when the checkpoints were made from another input. Real folders
in tmp_path laid out as the Trainer writes them; no ML stack needed."""

from __future__ import annotations

import json
from pathlib import Path

from runners import checkpoints

JOB = {"contract_version": 1, "kind": "train", "job_name": "j-1", "seed": 42, "train": {"adapter_name": "a"},
       "outputs": {"dir": "/x"}, "tracking": {"tracking_uri": "sqlite:///m.db"}}


def saved(where: Path, step: int, digest: str | None, run_id: str | None = "run-1") -> Path:
    """A checkpoint as the Trainer leaves it, marked complete by the runner unless `digest` is None."""
    folder = where / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": step / 10}))
    if digest is not None:
        checkpoints.mark(folder, step, digest, run_id)
    return folder


def test_digest_ignores_what_follows_from_the_name() -> None:
    moved = {**JOB, "job_name": "j-2", "outputs": {"dir": "/y"}, "tracking": {"tracking_uri": "sqlite:///n.db"}}
    assert checkpoints.input_digest(moved) == checkpoints.input_digest(JOB)
    assert checkpoints.input_digest({**JOB, "seed": 7}) != checkpoints.input_digest(JOB)


def test_resumes_from_the_last_complete_checkpoint_of_the_same_input(tmp_path: Path) -> None:
    digest = checkpoints.input_digest(JOB)
    saved(tmp_path, 10, digest)
    last = saved(tmp_path, 20, digest, run_id="run-2")
    torn = saved(tmp_path, 30, None)  # the job was killed while saving it: never resumed from, removed
    resume = checkpoints.resume_point(tmp_path, digest)
    assert (resume.checkpoint, resume.step, resume.mlflow_run_id) == (last, 20, "run-2")
    assert resume.note == "resumed at step 20 from checkpoint-20"
    assert not torn.exists()


def test_another_input_starts_over_and_says_why(tmp_path: Path) -> None:
    old = checkpoints.input_digest({**JOB, "seed": 7})
    saved(tmp_path, 10, old)
    now = checkpoints.input_digest(JOB)
    resume = checkpoints.resume_point(tmp_path, now)
    assert not resume.resumed and resume.step == 0 and resume.mlflow_run_id is None
    assert resume.note.startswith("started over: the checkpoint at step 10 was made from another job input")
    assert old[:12] in resume.note and now[:12] in resume.note
    assert not list(tmp_path.glob("checkpoint-*"))  # removed: never mixed with this run's


def test_no_checkpoints_or_checkpoints_off(tmp_path: Path) -> None:
    assert checkpoints.resume_point(tmp_path / "none", "d") == checkpoints.Resume()
    saved(tmp_path, 10, "d")
    off = checkpoints.resume_point(tmp_path, "d", enabled=False)
    assert not off.resumed and "save_strategy: no" in off.note


def test_trainer_settings_defaults_and_the_configs_own(tmp_path: Path) -> None:
    assert checkpoints.trainer_settings({}, tmp_path) == {
        "save_strategy": "steps", "output_dir": str(tmp_path / "checkpoints"),
        "save_steps": checkpoints.CHECKPOINT_STEPS, "save_total_limit": checkpoints.CHECKPOINT_KEEP}
    own = checkpoints.trainer_settings({"save_steps": 5, "save_total_limit": 3}, tmp_path)
    assert (own["save_steps"], own["save_total_limit"]) == (5, 3)
    assert checkpoints.trainer_settings({"save_strategy": "no"}, tmp_path) == {
        "save_strategy": "no", "output_dir": str(tmp_path / "checkpoints")}
    assert "save_steps" not in checkpoints.trainer_settings({"save_strategy": "epoch"}, tmp_path)


def test_epoch_of_the_checkpoint_resumed_from(tmp_path: Path) -> None:
    saved(tmp_path, 20, "d")
    assert checkpoints.epoch(checkpoints.resume_point(tmp_path, "d")) == 2.0
    assert checkpoints.epoch(checkpoints.Resume()) == 0.0
