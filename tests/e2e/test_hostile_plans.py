"""Edited plan files, through the real CLI: `ftctl apply plan.json` refuses them and changes nothing.

A real plan of the demo project on a real store holding a row ftctl does not manage is edited the
ways an attacker with the CI artifact would: without touching the digest (refused before the
store is opened: its bytes stay the same), and with the digest recomputed (refused by the checks
against the store under the lock, before the first step: no row, record, journal or history
written). No job folder appears and the planted runner script never runs, though the local
backend (which runs `runners/<kind>.py`) is the one configured. Signed plans: applied with the key
that signed them, refused unsigned or under another key, and the key appears nowhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.jobinput import input_digest
from reconciler.plan import Plan
from tests.e2e.helpers import REPO, SEED, dump_all, ftctl, job_folders, jobs_env, make_demo, show
from tests.fakes.studio_store import create_studio_store

STORE = ".app/state.db"
UNMANAGED = "0b7e4a52-6c1d-4f3e-8a29-5d4c3b2a1f00"
KEY = "k3y-Th4t-must-n0t-leak"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo on a Studio store with one model of its own, and `plan.json` made with a key."""
    root = make_demo(tmp_path_factory.mktemp("hostile"))
    (root / ".app").mkdir(exist_ok=True)
    create_studio_store(root / STORE)
    with sqlite3.connect(root / STORE) as conn:
        conn.execute("INSERT INTO models (id, type, name, huggingface_model_name) VALUES (?, 'huggingface', 'theirs', 'org/theirs')",
                     (UNMANAGED,))
    conn.close()
    made = ftctl(root, "plan", "specs/demo", "--offline", "--store", STORE, "-o", "plan.json",
                 env={**jobs_env(Path("jobs")), "FTCTL_PLAN_SEED": SEED, "FTCTL_PLAN_KEY": KEY})  # travels with a copy
    assert made.returncode == 0, show(made)
    assert KEY not in made.stdout + made.stderr
    return root


def _fresh(project: Path, tmp_path: Path) -> Path:
    """A copy of the project (store, plan file) for one apply."""
    work = tmp_path / "work"
    shutil.copytree(project, work)
    return work


def _edited(work: Path, edit: Callable[[dict[str, Any]], None], *, recompute: bool) -> str:
    data = json.loads((work / "plan.json").read_text(encoding="utf-8"))
    edit(data)
    if recompute:  # what an attacker who knows the format does
        data["digest"] = Plan.from_dict(data).digest()
    (work / "edited.json").write_text(json.dumps(data), encoding="utf-8")
    return "edited.json"


def _change(data: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in data["changes"] if c["kind"] == kind and (c["ops"] or c["launches"]))


def _evil_kind(work: Path) -> str:
    (work / "evil.py").write_text(f"open({str(work / 'EVIL-RAN')!r}, 'w').write('ran')\n", encoding="utf-8")
    return os.path.relpath(work / "evil", REPO / "runners")


def _delete_theirs(data: dict[str, Any]) -> None:
    _change(data, "Model")["ops"].append({"table": "models", "op": "delete", "row_id": UNMANAGED, "values": {}})


def _silent_model_name(data: dict[str, Any]) -> None:
    change = _change(data, "Model")
    row_id = change["ops"][0]["row_id"]
    change["ops"].append({"table": "models", "op": "update", "row_id": row_id, "values": {"huggingface_model_name": "evil/model"}})


def _job_folder_outside(data: dict[str, Any]) -> None:
    _change(data, "FineTuningJob")["launches"][0]["job_name"] = "../../.."


def _insert_model_name(data: dict[str, Any]) -> None:
    insert = next(op for op in _change(data, "Model")["ops"] if op["op"] == "insert")
    insert["values"]["huggingface_model_name"] = "evil/model"


def _train_input(data: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = _change(data, "FineTuningJob")["launches"][0]["input"]
    return document


def _another_model(data: dict[str, Any]) -> None:
    """Train another model, renaming the job after the edited input (its name carries the input's
    digest), so only the check of the input against the plan's rows is left to catch it."""
    launch = _change(data, "FineTuningJob")["launches"][0]
    launch["input"]["model"]["name_or_path"] = "evil/model"
    old = launch["job_name"]
    new = f"{old.rpartition('-')[0]}-{input_digest(launch['input'])[:8]}"
    launch["job_name"], launch["input"] = new, json.loads(json.dumps(launch["input"]).replace(old, new))


def _outputs_in_another_jobs_folder(data: dict[str, Any]) -> None:
    """Outputs in a folder that is named after the job, but not in this machine's jobs folder: only
    the backend knows its jobs folder, and it is asked before the first step writes anything."""
    outputs = _train_input(data)["outputs"]
    jobs_folder = outputs["dir"].rsplit("/", 1)[0]
    for key, value in outputs.items():
        if isinstance(value, str):
            outputs[key] = value.replace(jobs_folder, "/tmp/elsewhere", 1)


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "writes outputs in another jobs folder": _outputs_in_another_jobs_folder,
    "inserts another huggingface_model_name than its diff shows": _insert_model_name,
    "trains another model than the rows name": _another_model,
    "writes a job's outputs elsewhere": lambda data: _train_input(data)["outputs"].update(dir="/tmp/evil"),
    "deletes a row ftctl does not manage": _delete_theirs,
    "changes huggingface_model_name silently": _silent_model_name,
    "writes a job folder outside the jobs folder": _job_folder_outside,
}
DIGEST_MISMATCH = "edited.json was modified after `ftctl plan` wrote it (digest mismatch)"


def _apply(work: Path, plan_file: str, **env: str) -> Any:
    return ftctl(work, "apply", plan_file, "--store", STORE, env={"FTCTL_BACKEND": "local", "FTCTL_JOBS_DIR": str(work / "jobs"), **env})


def _assert_refused(proc: Any, work: Path, expected: str) -> None:
    assert proc.returncode == 1, show(proc)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and expected in errors[0], show(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (work / "jobs").exists() or not any((work / "jobs").iterdir())
    assert not (work / "EVIL-RAN").exists()


@pytest.mark.parametrize("case", [*EDITS, "runs another script"])
def test_an_edited_plan_file_is_refused_and_the_store_keeps_its_bytes(project: Path, tmp_path: Path, case: str) -> None:
    work = _fresh(project, tmp_path)
    before = hashlib.sha256((work / STORE).read_bytes()).hexdigest()
    evil = _evil_kind(work)
    edit = EDITS.get(case) or (lambda data: _change(data, "FineTuningJob")["launches"][0].update(kind=evil))
    proc = _apply(work, _edited(work, edit, recompute=False))
    _assert_refused(proc, work, DIGEST_MISMATCH)
    assert hashlib.sha256((work / STORE).read_bytes()).hexdigest() == before


@pytest.mark.parametrize(("case", "expected"), [
    ("deletes a row ftctl does not manage", f"(delete models/{UNMANAGED}): targets a row that is not Model/"),
    ("changes huggingface_model_name silently", "sets huggingface_model_name, which no field diff of the change shows"),
    ("writes a job folder outside the jobs folder", "'../../..'): not the job name ftctl derives"),
    ("runs another script", "a FineTuningJob runs train, not "),
    ("inserts another huggingface_model_name than its diff shows", "sets huggingface_model_name, which no field diff of the change shows"),
    ("trains another model than the rows name", "its job input differs at model.name_or_path from what the plan's rows give"),
    ("writes a job's outputs elsewhere", "its job input's outputs are not in a folder named"),
    ("writes outputs in another jobs folder", "job input refused: its outputs are not in the job's folder"),
])
def test_an_edited_plan_with_a_recomputed_digest_is_refused_before_any_write(project: Path, tmp_path: Path, case: str,
                                                                              expected: str) -> None:
    work = _fresh(project, tmp_path)
    evil = _evil_kind(work)
    edit = EDITS.get(case) or (lambda data: _change(data, "FineTuningJob")["launches"][0].update(kind=evil))
    plan_file = _edited(work, edit, recompute=True)
    (work / "plan.json").unlink()  # only the edited file is left to apply
    before = dump_all(work / STORE, skip_tables=("ftctl_lock", "ftctl_meta"))
    proc = _apply(work, plan_file)
    _assert_refused(proc, work, "the plan is refused, nothing was applied: ")
    assert expected in proc.stderr, show(proc)
    after = dump_all(work / STORE, skip_tables=("ftctl_lock", "ftctl_meta"))
    assert {t: rows for t, rows in after.items() if rows} == {t: rows for t, rows in before.items() if rows}
    assert (UNMANAGED,) in [r[:1] for r in after["models"]]


def test_a_signed_plan_applies_with_its_key_only(project: Path, tmp_path: Path) -> None:
    work = _fresh(project, tmp_path)
    text = (work / "plan.json").read_text(encoding="utf-8")
    assert KEY not in text and json.loads(text)["signature"]
    env = jobs_env(Path("jobs"))  # the jobs folder the plan was made for, relative to the copy
    wrong = ftctl(work, "apply", "plan.json", "--store", STORE, env={**env, "FTCTL_PLAN_KEY": "another-key"})
    assert wrong.returncode == 1 and "plan.json has a wrong signature" in wrong.stderr, show(wrong)
    unsigned = json.loads(text)
    del unsigned["signature"]
    (work / "unsigned.json").write_text(json.dumps(unsigned), encoding="utf-8")
    refused = ftctl(work, "apply", "unsigned.json", "--store", STORE, env={**env, "FTCTL_PLAN_KEY": KEY})
    assert refused.returncode == 1 and "unsigned.json is not signed, and FTCTL_PLAN_KEY is set" in refused.stderr, show(refused)
    applied = ftctl(work, "apply", "plan.json", "--store", STORE, env={**env, "FTCTL_PLAN_KEY": KEY})
    assert applied.returncode == 0, show(applied)
    for proc in (wrong, refused, applied):
        assert KEY not in proc.stdout + proc.stderr
    assert KEY.encode() not in (work / STORE).read_bytes()
    train = _change(json.loads(text), "FineTuningJob")["launches"][0]["job_name"]
    assert (job_folders(work / "jobs")[train] / "launch.json").is_file()  # the fake backend recorded the launch


@pytest.mark.parametrize(("name", "make", "expected"), [
    ("fifo.json", os.mkfifo, "fifo.json is a FIFO (named pipe), not a regular file"),
    ("zero.json", lambda path: os.symlink("/dev/zero", path), "zero.json is a character device, not a regular file"),
])
def test_a_plan_file_that_is_not_a_regular_file_is_refused_in_one_line(project: Path, tmp_path: Path, name: str,
                                                                       make: Callable[[Path], None], expected: str) -> None:
    work = _fresh(project, tmp_path)
    make(work / name)
    before = hashlib.sha256((work / STORE).read_bytes()).hexdigest()
    proc = ftctl(work, "apply", name, "--store", STORE, env=jobs_env(work / "jobs"), timeout=60, memory_cap=2 << 30)
    _assert_refused(proc, work, expected)
    assert hashlib.sha256((work / STORE).read_bytes()).hexdigest() == before
