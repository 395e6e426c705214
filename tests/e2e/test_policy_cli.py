"""Cost estimates and [policy] gates through the real CLI (issue 13, items 2-3), on the demo with a
model folder whose config.json has the tiny model's sizes: every plan shows per-job and total
figures (text, JSON, markdown); a plan over budget or naming a forbidden base model exits 3 with
file:line diagnostics naming the policy key; `apply --override-policy KEY --reason TEXT` goes
through, says what it waived, and the store's apply journal keeps who and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, DEMO_MODEL, apply, ftctl, jobs_env, make_demo, plan, query, show

STORE = "state.db"
TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "silu", "model_type": "llama",
        "tie_word_embeddings": False, "vocab_size": 512}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_demo(tmp_path / "project")
    (root / DEMO_MODEL / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    return root


def _toml(root: Path, text: str) -> None:
    (root / "ftctl.toml").write_text(text, encoding="utf-8")


def test_every_plan_shows_per_job_and_total_figures(project: Path) -> None:
    proc = plan(project, DEMO, store=STORE)
    assert proc.returncode == 2, show(proc)
    assert "FineTuningJob/demo-ticketing-lora: " in proc.stdout and "CPU-hours" in proc.stdout, show(proc)
    assert "139k parameters (config.json)" in proc.stdout and "Total: 0 GPU-hours" in proc.stdout, show(proc)
    data = json.loads(ftctl(project, "plan", DEMO, "--offline", "--store", STORE, "--format", "json").stdout)
    estimate = data["estimate"]
    jobs = {j["address"]: j for j in estimate["jobs"]}
    train = jobs["FineTuningJob/demo-ticketing-lora"]
    assert train["known"] and train["device"] == "cpu" and train["tokens"] > 0 and not train["later"]
    assert jobs["EvaluationJob/demo-base-vs-lora"]["later"]  # it waits for the training: counted all the same
    assert estimate["cpu_hours"] == pytest.approx(sum(j["device_hours"] for j in estimate["jobs"]))
    assert estimate["gpu_hours"] == 0.0
    md = ftctl(project, "plan", DEMO, "--offline", "--store", STORE, "--format", "markdown").stdout
    assert "**Estimated cost**" in md and "| FineTuningJob/demo-ticketing-lora | cpu x1 |" in md, md


def test_a_plan_over_budget_exits_3_naming_the_key_and_its_line(project: Path) -> None:
    _toml(project, "# budget\n[policy]\nmax_cost = 0.000001\nmax_gpu_hours = 10\n")
    proc = plan(project, DEMO, store=STORE)
    assert proc.returncode == 3, show(proc)
    assert "\n  ftctl.toml:3: PO-002 plan: the plan's jobs cost" in proc.stdout, show(proc)  # relative, as the manifests' paths
    assert "policy key max_cost" in proc.stdout and "PO-001" not in proc.stdout, show(proc)
    md = ftctl(project, "plan", DEMO, "--offline", "--store", STORE, "--format", "markdown")
    assert md.returncode == 3 and "**Blocked** (exit 3)" in md.stdout and "(policy key `max_cost`)" in md.stdout, show(md)


def test_a_forbidden_base_model_exits_3_at_the_manifest_line(project: Path) -> None:
    _toml(project, '[policy]\nallowed_base_models = ["bigscience/bloom-1b1"]\n')
    proc = plan(project, DEMO, store=STORE)
    assert proc.returncode == 3, show(proc)
    assert "specs/demo/pipeline.yaml:8: PO-005 FineTuningJob/demo-ticketing-lora" in proc.stdout, show(proc)
    assert "policy key allowed_base_models" in proc.stdout, show(proc)
    checked = ftctl(project, "validate", DEMO, "--offline")
    assert checked.returncode == 1 and "specs/demo/pipeline.yaml:8:3: PO-005 error" in checked.stdout, show(checked)


def test_an_unknown_policy_key_is_an_error_with_a_did_you_mean(project: Path) -> None:
    _toml(project, "[policy]\nmax_cots = 1\n")
    proc = plan(project, DEMO, store=STORE)
    assert proc.returncode == 1, show(proc)
    assert "ftctl.toml:2: unknown policy key 'max_cots' (did you mean 'max_cost'?)" in proc.stderr, show(proc)


def test_the_override_is_logged_and_lets_apply_go_through(project: Path) -> None:
    _toml(project, "[policy]\nmax_cost = 0.000001\n")
    env = {**jobs_env(project / "jobs"), "FTCTL_ACTOR": "alice"}
    blocked = apply(project, DEMO, store=STORE, env=env)
    assert blocked.returncode == 3 and not (project / STORE).exists(), show(blocked)
    no_reason = apply(project, DEMO, store=STORE, env=env, extra=["--override-policy", "max_cost"])
    assert no_reason.returncode == 1 and "needs --reason" in no_reason.stderr, show(no_reason)
    wrong = apply(project, DEMO, store=STORE, env=env, extra=["--override-policy", "max_cots", "--reason", "r"])
    assert wrong.returncode == 1 and "did you mean 'max_cost'" in wrong.stderr, show(wrong)
    done = apply(project, DEMO, store=STORE, env=env, extra=["--override-policy", "max_cost", "--reason", "budget approved in #42"])
    assert done.returncode == 0, show(done)
    assert "policy override (max_cost), reason: budget approved in #42" in done.stderr, show(done)
    rows = query(project / STORE, "SELECT a.actor, j.intent FROM ftctl_journal j JOIN ftctl_applies a USING (apply_id) "
                                  "WHERE j.step = 0")
    assert len(rows) == 1, rows
    actor, intent = rows[0]
    record = json.loads(intent)
    assert (actor, record["actor"], record["policy_override"], record["reason"]) == ("alice", "alice", ["max_cost"],
                                                                                     "budget approved in #42")
    assert record["waived"] and record["waived"][0].startswith("PO-002 plan:")
    assert query(project / STORE, "SELECT count(*) FROM fine_tuning_jobs")[0][0] == 1
