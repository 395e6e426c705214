"""`ftctl history` and `ftctl describe`'s chain (issue 13, item 5), through the real CLI on the fake
backend (a test finishes each job by writing its result, with its start and end times).

The demo's training runs with 3 epochs (g1), 5 (g2), then 3 again (g3 reuses g1's adapter). Its
history lists the three generations: g1 and g2 launched, from their commits, with the estimate the
plan made at launch (the demo's model has a config.json with sizes: a known CPU estimate) and the
measured runtime; g3 reused g1 (0 device-hours), and each generation's digests are its
`ftctl_lineage` rows'. JSON and -o carry the same; an unknown address exits 1 with one line.
`describe` shows the training's chain: manifest file:line -> Studio row -> job -> adapter ->
evaluations (with metrics) -> the export; an export's chain runs back to the training and dataset.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.e2e.helpers import DEMO, DEMO_MODEL, apply, ftctl, job_folders, make_demo, query, show

TRAIN, EVAL, EXPORT = "demo-ticketing-lora", "demo-base-vs-lora", "demo-ticketing"
FAKE = {"FTCTL_BACKEND": "fake"}
RUNTIME_S = 42.0
# The tiny model's sizes (runners/build_tiny_model.py): enough for a known estimate.
TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2,
               "intermediate_size": 64, "num_attention_heads": 4, "vocab_size": 1024, "hidden_act": "silu"}


def _epochs(root: Path, epochs: int) -> None:
    configs = root / DEMO / "configs.yaml"
    text, changed = re.subn(r"num_train_epochs: \d+", f"num_train_epochs: {epochs}", configs.read_text(encoding="utf-8"), count=1)
    assert changed == 1
    configs.write_text(text, encoding="utf-8")


def _finish_new(root: Path, known: set[str]) -> set[str]:
    """Finish every job launched since `known`, each after RUNTIME_S seconds by its result."""
    jobs = job_folders(root / ".app" / "jobs")
    for name, folder in jobs.items():
        if name in known or (folder / "result.json").exists():
            continue
        artifacts = {"adapter_dir": str(folder / "adapter")} if name.startswith("ftctl-train-") else {}
        metrics = {"rougeL": 0.9} if name.startswith("ftctl-eval-") else {"train_loss": 1.25}
        document = {"contract_version": 1, "job_name": name, "status": "succeeded", "metrics": metrics, "artifacts": artifacts,
                    "error": None, "started_at": 1000.0, "finished_at": 1000.0 + RUNTIME_S}
        (folder / ".result.json.tmp").write_text(json.dumps(document), encoding="utf-8")
        os.replace(folder / ".result.json.tmp", folder / "result.json")
    return set(jobs)


def _converge(root: Path, commit: str) -> None:
    env = {**FAKE, "FTCTL_COMMIT_SHA": commit}
    known: set[str] = set()
    for _ in range(10):
        done = apply(root, DEMO, env=env)
        assert done.returncode == 0, show(done)
        known = _finish_new(root, known)
        if ftctl(root, "plan", DEMO, "--offline", "--detailed-exitcode", env=env).returncode == 0:
            return
    raise AssertionError("did not converge")


def _history(root: Path, address: str) -> dict[str, object]:
    shown = ftctl(root, "history", address, "--format", "json", env=FAKE)
    assert shown.returncode == 0, show(shown)
    return json.loads(shown.stdout)


def test_history_lists_each_generation_with_its_inputs_cost_and_reuse(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    (root / DEMO_MODEL / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    db = root / ".app" / "state.db"
    for epochs, commit in ((3, "aaaa111"), (5, "bbbb222"), (3, "cccc333")):
        _epochs(root, epochs)
        _converge(root, commit)

    history = _history(root, f"FineTuningJob/{TRAIN}")
    generations = history["generations"]
    assert [(g["generation"], g["launched"], g["commit"], g["current"]) for g in generations] == [  # type: ignore[index]
        (1, True, "aaaa111", False), (2, True, "bbbb222", False), (3, False, "aaaa111", True)]  # g3 carries g1's inputs
    g1, g2, g3 = generations  # type: ignore[misc]
    assert g3["reused_generations"] == [1] and g3["device_hours"] == 0 and g3["cost"] == 0
    assert g1["jobs"][0]["job_name"] == g3["jobs"][0]["job_name"] != g2["jobs"][0]["job_name"]
    # what the plan estimated at launch, and what the run took
    for g in (g1, g2):
        assert g["estimate"]["known"] is True and g["estimate"]["device"] == "cpu" and g["device_hours"] > 0, g["estimate"]
        assert g["runtime_s"] == RUNTIME_S and g["jobs"][0]["state"] == "succeeded"
        assert g["jobs"][0]["metrics"] == {"train_loss": 1.25}
    assert g2["device_hours"] > g1["device_hours"]  # 5 epochs cost more than 3
    assert history["totals"]["device_hours"] == g1["device_hours"] + g2["device_hours"]  # type: ignore[index]
    # the digests are ftctl_lineage's
    recorded = query(db, "SELECT generation, input_digest, reuse_key, dataset_digest, base_revision, config_digests "
                         "FROM ftctl_lineage WHERE name = ? ORDER BY generation", (TRAIN,))
    for (gen, input_digest, key, dataset, base, configs), g in zip(recorded, generations, strict=True):  # type: ignore[arg-type]
        assert (gen, g["jobs"][0]["input_digest"], g["jobs"][0]["reuse_key"], g["dataset_digest"], g["base_revision"],
                g["config_digests"]) == (g["generation"], input_digest, key, dataset, base, json.loads(configs))
    assert len(g1["dataset_digest"]) == 64 and g1["base_revision"].startswith("files:")  # a project model's revision
    assert g1["config_digests"]["training_arguments"] != g2["config_digests"]["training_arguments"]

    text = ftctl(root, "history", f"ftjob/{TRAIN}", env=FAKE)
    assert text.returncode == 0, show(text)
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"FineTuningJob/{TRAIN}: 3 generations"), text.stdout
    assert any(re.match(r"^3\*\s+\S+ \S+\s+reused g1\s+aaaa111\s+succeeded", line) for line in lines), text.stdout
    assert any(re.match(r"^2\s+\S+ \S+\s+launched\s+bbbb222\s+succeeded\s+42s\s+\S+ CPU-h", line) for line in lines), text.stdout
    assert max(len(line) for line in lines) <= 100

    out = root / "history.json"
    assert ftctl(root, "history", f"FineTuningJob/{TRAIN}", "--format", "json", "-o", str(out), env=FAKE).returncode == 0
    assert json.loads(out.read_text(encoding="utf-8")) == history
    evaluation = _history(root, f"EvaluationJob/{EVAL}")
    assert [g["launched"] for g in evaluation["generations"]][-1] is False  # type: ignore[index]
    assert all(j["metrics"] == {"rougeL": 0.9} for j in evaluation["generations"][0]["jobs"])  # type: ignore[index]

    for address, says in ((f"FineTuningJob/{TRAIN}x", f"did you mean {TRAIN}?"), ("Dataset/demo-tickets", "runs no jobs"),
                          ("Nope/x", "no kind 'Nope'")):
        wrong = ftctl(root, "history", address, env=FAKE)
        assert wrong.returncode == 1 and says in wrong.stderr and "Traceback" not in wrong.stderr, show(wrong)


def test_describe_shows_the_chain_from_manifest_to_registry(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    _converge(root, "aaaa111")
    [(row_id, job)] = query(root / ".app" / "state.db", "SELECT id, cml_job_id FROM fine_tuning_jobs")
    [(adapter_id,)] = query(root / ".app" / "state.db", "SELECT id FROM adapters WHERE fine_tuning_job_id = ?", (row_id,))

    shown = ftctl(root, "describe", f"FineTuningJob/{TRAIN}", "-f", DEMO, "--offline", "--format", "json", env=FAKE)
    assert shown.returncode == 0, show(shown)
    chain = json.loads(shown.stdout)["chain"]
    stages = [link["stage"] for link in chain]
    assert stages[:4] == ["manifest", "row", "job", "adapter"], chain
    assert re.fullmatch(r"specs/demo/pipeline\.yaml:\d+", chain[0]["what"]), chain[0]
    assert chain[1]["what"] == f"fine_tuning_jobs/{row_id}"
    assert chain[2]["what"] == job and chain[2]["details"]["state"] == "succeeded"
    assert chain[2]["details"]["cml_job_id"] == job and chain[2]["details"]["commit"] == "aaaa111"
    assert chain[3]["what"] == f"adapters/{adapter_id}"
    evaluations = [link for link in chain if link["stage"] == "evaluation"]
    assert evaluations and all(link["address"] == f"EvaluationJob/{EVAL}" for link in evaluations)
    assert any(link["details"].get("metrics") == {"rougeL": 0.9} for link in evaluations), evaluations
    [export] = [link for link in chain if link["stage"] == "export"]
    assert export["address"] == f"ModelExport/{EXPORT}"

    text = ftctl(root, "describe", f"FineTuningJob/{TRAIN}", env=FAKE)
    assert "Chain:" in text.stdout and f"adapters/{adapter_id}" in text.stdout, show(text)

    back = ftctl(root, "describe", f"ModelExport/{EXPORT}", "--format", "json", env=FAKE)
    assert back.returncode == 0, show(back)
    stages = [(link["stage"], link.get("address", "")) for link in json.loads(back.stdout)["chain"]]
    assert ("adapter", "") in [(s, "") for s, _ in stages] and ("training", f"FineTuningJob/{TRAIN}") in stages, stages
    assert any(s == "dataset" for s, _ in stages) and any(s == "base model" for s, _ in stages), stages
