"""One identity per job, through the real CLI: the issue's scenarios, each in a copy of specs/.

- A 3-epoch run of the demo sits in the project's jobs folder (store A); the demo with 5 epochs
  applied to a new store B from the same folder launches B's own job, and B's status never shows
  A's result. (The fake backend: a test writes each job's result.)
- A job folder whose input.json was edited after the job ran is reported (input_mismatch), and its
  result is not adopted: no adapter is registered from it.
- On CML (the fake CML server running the stub runners): two stores applied from one folder, with
  one spec changed between them, run separate CML jobs, each store registers the adapter its own
  job wrote, and a second apply of each launches nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

from tests.e2e.helpers import DEMO, apply, ftctl, job_folders, make_demo, query, show, write_result
from tests.fakes.cml_engine import STUB_RUNNERS, RunnerEngine
from tests.fakes.cml_server import STUDIO_TEMPLATES, FakeCML

TRAIN = "FineTuningJob/demo-ticketing-lora"
A_LOSS = 5.78  # what store A's 3-epoch run reported
FAKE = {"FTCTL_BACKEND": "fake"}  # jobs in the project's own jobs folder (.app/jobs under its root)


def _epochs(root: Path, epochs: int) -> None:
    configs = root / DEMO / "configs.yaml"
    text, changed = re.subn(r"num_train_epochs: \d+", f"num_train_epochs: {epochs}", configs.read_text(encoding="utf-8"), count=1)
    assert changed == 1 and str(epochs) != "15", "the demo trains 15 epochs; set another number"
    configs.write_text(text, encoding="utf-8")


def _trainings(root: Path) -> dict[str, Path]:
    return {name: folder for name, folder in job_folders(root / ".app" / "jobs").items() if name.startswith("ftctl-train-")}


def _status(root: Path, store: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shown = ftctl(root, "status", DEMO, "--offline", "--format", "json", "--store", store, env=env)
    assert shown.returncode in (0, 2), show(shown)
    return shown


def _training_jobs(shown: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [j for j in json.loads(shown.stdout)["jobs"] if f"{j['kind']}/{j['name']}" == TRAIN]


def test_a_new_store_never_adopts_an_earlier_run_from_the_same_folder(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    done = apply(root, DEMO, store=".app/a.db", env=FAKE, seed=None)  # each store its own identity (random, as for users)
    assert done.returncode == 0, show(done)
    [a_job] = _trainings(root)
    write_result(root / ".app" / "jobs", a_job, metrics={"train_loss": A_LOSS})
    assert [j["state"] for j in _training_jobs(_status(root, ".app/a.db", FAKE))] == ["succeeded"]

    _epochs(root, 5)
    done = apply(root, DEMO, store=".app/b.db", env=FAKE, seed=None)
    assert done.returncode == 0, show(done)
    [b_job] = set(_trainings(root)) - {a_job}
    assert _trainings(root)[a_job].parent != _trainings(root)[b_job].parent, "each store keeps its own jobs folder"
    b_input = json.loads((_trainings(root)[b_job] / "input.json").read_text(encoding="utf-8"))
    assert b_input["train"]["training_arguments"]["num_train_epochs"] == 5

    shown = _status(root, ".app/b.db", FAKE)
    assert [(j["job"], j["state"]) for j in _training_jobs(shown)] == [(b_job, "running")]
    assert str(A_LOSS) not in shown.stdout and a_job not in shown.stdout


def test_a_job_folder_with_an_edited_input_is_reported_and_not_adopted(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    assert apply(root, DEMO, env=FAKE).returncode == 0
    [job] = _trainings(root)
    write_result(root / ".app" / "jobs", job, metrics={"train_loss": A_LOSS},
                 artifacts={"adapter_dir": str(_trainings(root)[job] / "adapter")})
    recorded = _trainings(root)[job] / "input.json"
    document = json.loads(recorded.read_text(encoding="utf-8"))
    recorded.write_text(json.dumps({**document, "train": {**document["train"], "num_epochs": 7}}), encoding="utf-8")

    shown = _status(root, ".app/state.db", FAKE)
    [training] = _training_jobs(shown)
    assert (training["job"], training["state"]) == (job, "failed") and "input_mismatch" in str(training["summary"]), training
    assert str(A_LOSS) not in shown.stdout
    done = apply(root, DEMO, env=FAKE)
    assert done.returncode == 0 and f"{TRAIN}: failed (input_mismatch)" in done.stdout, show(done)
    assert query(root / ".app" / "state.db", "SELECT name FROM adapters WHERE name LIKE 'demo-ticketing-lora%'") == []
    assert (_trainings(root)[job] / "launches.log").read_text(encoding="utf-8") == "1\n", "never launched again"


def test_two_stores_from_one_folder_run_separate_cml_jobs(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    with FakeCML(polls_per_status=1) as cml:
        for name, script in STUDIO_TEMPLATES.items():
            cml.add_job(name, script, "runtime", cpu=2, memory=8, nvidia_gpu=1)
        cml.on_run(RunnerEngine(root))
        env = {**cml.env(), "FTCTL_BACKEND": "cml", "FTCTL_CML_RUNNERS_DIR": str(STUB_RUNNERS)}

        def converge(store: str) -> Counter[str]:
            """apply --wait to `store`; the create calls CML answered."""
            before = Counter(r.operation for r in cml.requests if r.operation.startswith("create_") and r.status == 200)
            done = apply(root, DEMO, store=store, env=env, seed=None, extra=("--wait", "--poll", "0.1"))
            assert done.returncode == 0, show(done)
            return Counter(r.operation for r in cml.requests if r.operation.startswith("create_") and r.status == 200) - before

        assert converge("a.db")["create_job"] > 0
        assert converge("a.db") == Counter(), "a second apply launches nothing"
        _epochs(root, 5)
        assert converge("b.db")["create_job"] > 0
        assert converge("b.db") == Counter(), "a second apply launches nothing"
        trainings = {j.name for j in cml.jobs.values() if j.name.startswith("ftctl-train-")}
        ran = {}
        for store in ("a.db", "b.db"):
            [(cml_job_id,)] = query(root / store, "SELECT cml_job_id FROM fine_tuning_jobs")
            job = cml.jobs[cml_job_id].name  # the row holds the CML job's id (what the Studio's pages match)
            [(location,)] = query(root / store, "SELECT location FROM adapters WHERE name = 'demo-ticketing-lora'")
            assert f"/{job}/" in f"/{location}/", (store, job, location)  # the adapter its own job wrote
            ran[store] = job
        assert set(ran.values()) == trainings and len(trainings) == 2, (ran, trainings)
        assert cml.server_errors == [] and cml.callback_errors == []


def test_an_in_place_change_after_the_training_ran_does_not_run_it_again(tmp_path: Path) -> None:
    """The job input names the Hub token's variable; naming one later changes the input's digest, not
    what was trained: the store's row records its job, and the generation keeps following it."""
    root = make_demo(tmp_path / "project")
    assert apply(root, DEMO, env=FAKE).returncode == 0
    [job] = _trainings(root)
    write_result(root / ".app" / "jobs", job, metrics={"train_loss": A_LOSS},
                 artifacts={"adapter_dir": str(_trainings(root)[job] / "adapter")})
    assert apply(root, DEMO, env=FAKE).returncode == 0  # registers the adapter
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    named = text.replace("  adapter_name: demo-ticketing-lora\n", "  adapter_name: demo-ticketing-lora\n  hf_token_env: HF_TOKEN\n")
    assert named != text
    pipeline.write_text(named, encoding="utf-8")

    done = apply(root, DEMO, env=FAKE)
    assert done.returncode == 0 and "=> launches job ftctl-train-" not in done.stdout, show(done)
    assert list(_trainings(root)) == [job]
    [training] = _training_jobs(_status(root, ".app/state.db", FAKE))
    assert (training["job"], training["state"]) == (job, "succeeded")
