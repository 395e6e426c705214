"""runners/evaluate.py and runners/export.py as real jobs: subprocesses on the tiny model and the demo CSV.

Uses the session fixtures of tests/runners/conftest.py: `tiny_model` (built once) and `tracking_uri`
(one MLflow sqlite DB for the session; `mlflow_store` below migrates it once, in this process, and
adds this module's experiment with its artifacts in tmp). The LoRA adapter is made without training
(random A and B, so it visibly changes the output). The in-process checks (adapter, reference
generation, pyfunc reload) import the ML stack once, after the offline settings of
reference/ml-stack.md §6.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNERS = REPO / "runners"
DATA = REPO / "specs" / "demo" / "data" / "tickets.csv"
PROMPT = {
    "prompt_template": "### CUSTOMER: {instruction}\n### ACTION: {intent}",
    "input_template": "### CUSTOMER: {instruction}\n### ACTION: ",
    "completion_template": "{intent}",
}
EXPERIMENT = "ftctl-evalexport"
RUN_GROUP = "parent-job-1"
OFFLINE = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
    "MLFLOW_GENAI_EVAL_MAX_WORKERS": "2", "OMP_NUM_THREADS": "1", "DISABLE_MLFLOW_INTEGRATION": "TRUE",
}

_MISSING = [m for m in ("torch", "transformers", "peft", "datasets", "mlflow", "rouge_score")
            if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.ml,
    pytest.mark.skipif(bool(_MISSING), reason=f"the ML stack is not installed ({', '.join(_MISSING)} missing): "
                                              "`make install-train`"),
]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ml_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The offline settings, in this process (before any ML import) and for the runners; undone at the end."""
    home = tmp_path_factory.mktemp("evalexport")
    saved = {k: os.environ.get(k) for k in [*OFFLINE, "HF_HOME"]}
    os.environ.update(OFFLINE)
    os.environ.setdefault("HF_HOME", str(home / "hf_home"))
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def mlflow_store(ml_home: Path, tracking_uri: str) -> str:
    """The session's MLflow DB, migrated once here, with this module's experiment keeping artifacts in tmp."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=(ml_home / "artifacts").as_uri())
    return tracking_uri


@pytest.fixture(scope="session")
def adapter(tiny_model: Path, ml_home: Path) -> Path:
    """A LoRA adapter without training: random A and B, so it changes what the model generates."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(1)
    out = ml_home / "adapter"
    config = peft.LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False)
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def runner(name: str) -> Any:
    """runners/<name>.py as a module (`ftctl_runner_<name>`): importing it imports no ML library."""
    module_name = f"ftctl_runner_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, RUNNERS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def greedy(base: Path, adapter_dir: Path | None, prompt: str, max_new_tokens: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    tok = AutoTokenizer.from_pretrained(base)
    enc = tok([prompt], return_tensors="pt")
    out = model.eval().generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return str(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))


# -- helpers ---------------------------------------------------------------------------------------


def job_input(tmp: Path, kind: str, name: str, tracking_uri: str, base: Path, **sections: Any) -> Path:
    out = tmp / name
    job = {
        "contract_version": 1, "kind": kind, "job_name": name, "seed": 42,
        "model": {"type": "project", "name_or_path": str(base)},
        "outputs": {"dir": str(out), "result": str(out / "result.json"), "progress": str(out / "progress.json")},
        "tracking": {"tracking_uri": tracking_uri, "experiment": EXPERIMENT, "run_group": RUN_GROUP},
        **sections,
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def run_job(runner: str, input_path: Path, cwd: Path) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("FTCTL_RUNNER_FAIL", "FTCTL_JOB_INPUT")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the same on any machine: CPU
    proc = subprocess.run([sys.executable, str(RUNNERS / f"{runner}.py"), "--input", str(input_path)],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env, check=False)
    job = json.loads(input_path.read_text())
    result_path = Path(job["outputs"]["result"])
    assert result_path.is_file(), f"no result after {time.perf_counter() - started:.1f}s:\n{proc.stderr[-3000:]}"
    return json.loads(result_path.read_text()), proc


def succeeded(result: dict[str, Any], proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result["status"] == "succeeded" and proc.returncode == 0, f"{result.get('error')}\n{proc.stderr[-4000:]}"
    return result


def candidate(label: str, base: Path, adapter_dir: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label, "model": {"type": "project", "name_or_path": str(base)},
                           "evaluation_id": f"eval-{label}"}
    if adapter_dir is not None:
        out["adapter_path"] = str(adapter_dir)
    return out


def dataset(path: Path = DATA) -> dict[str, Any]:
    return {"type": "project_csv", "name_or_path": str(path)}


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- no ML in the runners' decisions ---------------------------------------------------------------


def test_decisions_without_ml() -> None:
    probe = ("import importlib.util, sys\n"
             f"for name in ('evaluate', 'export'):\n"
             f"    spec = importlib.util.spec_from_file_location(name, {str(RUNNERS)!r} + f'/{{name}}.py')\n"
             "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
             "heavy = ('torch', 'transformers', 'peft', 'datasets', 'mlflow', 'reconciler')\n"
             "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr  # imported, the runners load nothing heavy

    ev, ex = runner("evaluate"), runner("export")
    one = {"base": {"exact_match": 1.0, "rows": 2.0}}
    assert ev.result_metrics(one) == {"exact_match": 1.0, "rows": 2.0}
    assert ev.result_metrics({**one, "lora": {"exact_match": 0.5, "rows": 2.0}}) == {
        "base.exact_match": 1.0, "base.rows": 2.0, "lora.exact_match": 0.5, "lora.rows": 2.0}
    assert ev.generation_settings({}) == {"do_sample": False, "max_new_tokens": 32}
    assert ev.generation_settings({"generation_config": {"max_new_tokens": 4}})["max_new_tokens"] == 4
    assert ev.generation_settings({"generation_config": {"max_length": 64}}) == {"do_sample": False, "max_length": 64}

    local = {"type": "project", "name_or_path": "/models/base"}
    hub = {"type": "huggingface", "name_or_path": "org/model"}
    assert ex.merge_decision(hub, {"adapter_path": "/a"}) == (False, None)
    assert ex.merge_decision(hub, {"adapter_path": "/a", "merge": True}) == (True, "export.merge: true")
    merged, reason = ex.merge_decision(local, {"adapter_path": "/a"})
    assert merged and "local directory" in str(reason)
    assert ex.merge_decision(local, {}) == (False, None)  # no adapter: the base as it is
    requirements = ex.pip_requirements(peft=True)
    assert not [r for r in requirements if "torchvision" in r or "+" in r]
    assert {r.split("==")[0] for r in requirements} >= {"torch", "transformers", "peft"}
    assert ex.inference_defaults({"generation_config": {"max_new_tokens": 5}}) == {
        "return_full_text": False, "max_new_tokens": 5}


def test_test_split_is_the_train_runners(ml_home: Path) -> None:
    """The evaluate runner rebuilds exactly the rows the train runner held out."""
    if not (RUNNERS / "train.py").is_file():
        pytest.skip("runners/train.py is not there yet")
    ev, train = runner("evaluate"), runner("train")
    source = dataset()
    for fraction, split in [(1.0, 0.9), (1.0, 0.8), (0.5, 0.9), (0.3, 0.75), (1.0, 0.7)]:
        _, held_out = train.sample_and_split(train.load_data(source), fraction, split, 42)
        mine = ev.test_split(ev.load_data(source), fraction, split, 42)
        assert mine["instruction"] == held_out["instruction"], (fraction, split)
        assert len(mine) > 0


# -- the runners as jobs ---------------------------------------------------------------------------


def test_evaluate_base_only(tmp_path: Path, mlflow_store: str, tiny_model: Path) -> None:
    path = job_input(tmp_path, "evaluate", "eval-base", mlflow_store, tiny_model, dataset=dataset(), prompt=PROMPT,
                     evaluate={"candidates": [candidate("base", tiny_model)], "max_rows": 4,
                               "generation_config": {"do_sample": False, "max_new_tokens": 6}})
    job = json.loads(path.read_text())
    job["outputs"]["evaluation_dir"] = str(tmp_path / "eval-base" / "evaluation")  # the Studio's files go there
    path.write_text(json.dumps(job), encoding="utf-8")
    result = succeeded(*run_job("evaluate", path, tmp_path))

    metrics = result["metrics"]
    assert set(metrics) == {"exact_match", "rougeL", "latency_s", "rows"}
    studio = Path(result["artifacts"]["evaluation_dirs"]["base"])
    assert studio == tmp_path / "eval-base" / "evaluation"
    assert read_csv(str(studio / "aggregregated_results.csv")) == [  # the Studio's spelling, names and columns
        {"metric": name, "score": str(metrics[mine])}
        for mine, name in (("exact_match", "exact_match/v1"), ("rougeL", "rougeL/v1/mean"), ("latency_s", "latency/mean"))]
    studio_rows = read_csv(str(studio / "result_evaluation.csv"))
    assert len(studio_rows) == 4 and list(studio_rows[0])[:3] == ["model_input", "expected_output", "outputs"]
    assert 0 <= metrics["exact_match"] <= 1 and 0 <= metrics["rougeL"] <= 1
    assert metrics["latency_s"] > 0 and metrics["rows"] == 4
    rows = read_csv(result["artifacts"]["rows_csv"])
    assert len(rows) == 4 and list(rows[0]) == ["input", "expected", "prediction", "exact_match", "rougeL",
                                                "latency_s", "label"]
    assert all(r["input"].startswith("### CUSTOMER: ") and r["input"].endswith("### ACTION: ") for r in rows)
    assert {r["label"] for r in rows} == {"base"}
    aggregate = read_csv(result["artifacts"]["aggregate_csv"])
    assert {(a["label"], a["metric"]) for a in aggregate} == {("base", m) for m in metrics}
    progress = json.loads((tmp_path / "eval-base" / "progress.json").read_text())
    assert progress["stage"] == "succeeded"

    import mlflow

    run = mlflow.MlflowClient(mlflow_store).get_run(result["artifacts"]["mlflow_run_ids"]["base"])
    assert run.info.run_name == "eval-base/base"
    assert run.data.tags["ftctl.parent_job_id"] == RUN_GROUP
    assert run.data.tags["ftctl.evaluation_id"] == "eval-base"
    assert run.data.tags["ftctl.adapter"] == "base"
    assert run.data.metrics == pytest.approx(metrics)


def test_evaluate_base_and_adapter(tmp_path: Path, mlflow_store: str, tiny_model: Path, adapter: Path) -> None:
    path = job_input(tmp_path, "evaluate", "eval-both", mlflow_store, tiny_model, dataset=dataset(), prompt=PROMPT,
                     evaluate={"candidates": [candidate("base", tiny_model), candidate("lora", tiny_model, adapter)],
                               "generation_config": {"max_new_tokens": 6}})
    result = succeeded(*run_job("evaluate", path, tmp_path))

    metrics = result["metrics"]
    assert set(metrics) == {f"{label}.{m}" for label in ("base", "lora")
                            for m in ("exact_match", "rougeL", "latency_s", "rows")}
    assert metrics["base.rows"] == metrics["lora.rows"] == 32  # ceil(320 * 0.1)
    assert all(0 <= metrics[f"{label}.{m}"] <= 1 for label in ("base", "lora") for m in ("exact_match", "rougeL"))
    rows = read_csv(result["artifacts"]["rows_csv"])
    by_label = {label: [r for r in rows if r["label"] == label] for label in ("base", "lora")}
    assert [r["input"] for r in by_label["base"]] == [r["input"] for r in by_label["lora"]]
    assert [r["prediction"] for r in by_label["base"]] != [r["prediction"] for r in by_label["lora"]]  # adapter on

    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    run_ids = result["artifacts"]["mlflow_run_ids"]
    lora = client.get_run(run_ids["lora"])
    assert lora.data.tags["ftctl.adapter"] == str(adapter)
    assert lora.data.tags["ftctl.evaluation_id"] == "eval-lora"
    assert lora.data.tags["ftctl.parent_job_id"] == RUN_GROUP
    assert set(lora.data.metrics) == {"exact_match", "rougeL", "latency_s", "rows"}
    grouped = client.search_runs([lora.info.experiment_id], f"tags.`ftctl.parent_job_id` = '{RUN_GROUP}'")
    assert set(run_ids.values()) <= {r.info.run_id for r in grouped}


def test_evaluate_missing_dataset_is_a_data_error(tmp_path: Path, mlflow_store: str, tiny_model: Path) -> None:
    path = job_input(tmp_path, "evaluate", "eval-nodata", mlflow_store, tiny_model,
                     dataset=dataset(tmp_path / "nowhere.csv"), prompt=PROMPT,
                     evaluate={"candidates": [candidate("base", tiny_model)]})
    result, proc = run_job("evaluate", path, tmp_path)
    assert proc.returncode == 1 and result["status"] == "failed"
    assert result["error"]["error_class"] == "data", result["error"]
    assert "nowhere.csv" in result["error"]["message"]


def test_export_registers_a_loadable_version(tmp_path: Path, mlflow_store: str, tiny_model: Path,
                                             adapter: Path) -> None:
    path = job_input(tmp_path, "export", "export-lora", mlflow_store, tiny_model,
                     export={"type": "model_registry", "registered_model_name": "ftctl-tiny-lora",
                             "adapter_path": str(adapter), "generation_config": {"do_sample": False, "max_new_tokens": 6}})
    result = succeeded(*run_job("export", path, tmp_path))

    artifacts = result["artifacts"]
    assert artifacts["registered_model_name"] == "ftctl-tiny-lora"
    assert artifacts["model_uri"] == f"models:/ftctl-tiny-lora/{artifacts['registered_model_version']}"
    assert artifacts["merged"] is True and "local directory" in artifacts["merge_reason"]  # merge: false, local base
    assert artifacts["mlflow_run_id"] and artifacts["reused"] is False

    import mlflow

    prompt = "### CUSTOMER: what payment options are there\n### ACTION: "
    model = mlflow.pyfunc.load_model(artifacts["model_uri"])
    predicted = model.predict([prompt])
    assert isinstance(predicted, list) and len(predicted) == 1
    with_adapter = greedy(tiny_model, adapter, prompt, 6)
    assert predicted[0] == with_adapter  # the merged weights, the generation defaults, the new text only
    assert with_adapter != greedy(tiny_model, None, prompt, 6)  # so the adapter really is in there

    client = mlflow.MlflowClient(mlflow_store)
    version = client.get_model_version("ftctl-tiny-lora", artifacts["registered_model_version"])
    assert version.status == "READY" and version.tags["ftctl.job_name"] == "export-lora"

    # the same launch again (a retry): the version it registered, not a new one
    again = succeeded(*run_job("export", path, tmp_path))
    assert again["artifacts"]["reused"] is True
    assert again["artifacts"]["model_uri"] == artifacts["model_uri"]
    assert len(client.search_model_versions("name = 'ftctl-tiny-lora'")) == 1


def test_export_cml_model_is_unsupported(tmp_path: Path, mlflow_store: str, tiny_model: Path) -> None:
    path = job_input(tmp_path, "export", "export-cml", mlflow_store, tiny_model,
                     export={"type": "cml_model", "registered_model_name": "ftctl-tiny-cml"})
    result, proc = run_job("export", path, tmp_path)
    assert proc.returncode == 1
    assert result["error"]["error_class"] == "unsupported"
    assert "CML backend" in result["error"]["message"]


def test_endpoint_serves_base_model_with_adapter(tmp_path: Path, tiny_model: Path, adapter: Path) -> None:
    """runners/endpoint.py as a CML model endpoint would run it: the Studio's environment, then
    `api_wrapper` per request. It answers what the base model with the adapter generates (greedy),
    and a malformed request gets an error, not a crash."""
    prompt = "### CUSTOMER: where is my order\n### ACTION: "
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(RUNNERS)!r})\n"
        "import endpoint\n"
        f"print(json.dumps([endpoint.api_wrapper({{'prompt': {prompt!r}}}), endpoint.api_wrapper({{'text': 'x'}}),"
        f" endpoint.api_wrapper(json.dumps({{'prompt': {prompt!r}}}))]))\n"
    )
    env = {**os.environ, **OFFLINE, "FINE_TUNING_STUDIO_BASE_MODEL_HF_NAME": str(tiny_model),
           "FINE_TUNING_STUDIO_ADAPTER_LOCATION": str(adapter),
           "FINE_TUNING_STUDIO_GEN_CONFIG_STRING": json.dumps({"max_new_tokens": 6, "return_full_text": False})}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answered, refused, from_text = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answered == {"response": greedy(tiny_model, adapter, prompt, 6)}
    assert answered["response"] != greedy(tiny_model, None, prompt, 6)  # the adapter is applied
    assert "error" in refused and from_text == answered
