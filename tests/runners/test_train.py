"""runners/train.py: the train runner, run as a real job process on the tiny model and the demo data.

One real training (module-scoped, ~10-20 s with imports and the MLflow store's creation); every
failure case fails before training starts, in a second or three. The settings helpers are also
tested in-process, without the ML stack.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runners import train as runner
from tests.runners.conftest import JobWriter
from tests.runners.helpers import (
    DEMO_CSV,
    DEMO_TRAINING,
    REPO,
    needs_ml,
    read_job_files,
    run_runner,
    write_job_input,
)

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
HAS_AXOLOTL = importlib.util.find_spec("axolotl") is not None


def failed_with(job_path: Path, error_class: str, **kwargs: Any) -> dict[str, Any]:
    """Run the job; it must fail with `error_class`, with a result and a final progress to say so."""
    proc = run_runner("train", job_path, **kwargs)
    result, progress = read_job_files(job_path)
    assert result is not None, f"no result written; stderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert result["status"] == "failed"
    assert result["error"]["error_class"] == error_class, result["error"]
    assert progress is not None and progress["stage"] == "failed"
    return result["error"]


# -- one real training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tracking_uri: str) -> dict[str, Any]:
    """The demo job, 2 epochs (the job's num_epochs override), with a legacy warmup_ratio to translate."""
    directory = tmp_path_factory.mktemp("train-ok")
    job_path = write_job_input(directory, tiny_model, tracking_uri, "train",
                               train={"num_epochs": 2, "training_arguments": {**DEMO_TRAINING, "warmup_ratio": 0.1}})
    proc = run_runner("train", job_path)
    result, progress = read_job_files(job_path)
    return {"job": json.loads(job_path.read_text()), "proc": proc, "result": result, "progress": progress}


@needs_ml[0]
@needs_ml[1]
class TestTraining:
    def test_succeeds_and_saves_the_adapter(self, trained: dict[str, Any], tiny_model: Path) -> None:
        proc, result = trained["proc"], trained["result"]
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert result is not None and result["status"] == "succeeded", result
        schema = json.loads((REPO / "schemas" / "job-result.schema.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(result)
        adapter = Path(result["artifacts"]["adapter_dir"])
        assert adapter == Path(trained["job"]["outputs"]["adapter_dir"])
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == 8
        assert config["base_model_name_or_path"] == str(tiny_model)
        assert (adapter / "adapter_model.safetensors").is_file()
        assert (adapter / "tokenizer_config.json").is_file()
        assert not (Path(trained["job"]["outputs"]["dir"]) / "trainer" / "checkpoint-72").exists()  # save_strategy no

    def test_progress_ends_succeeded(self, trained: dict[str, Any]) -> None:
        progress = trained["progress"]
        assert progress["stage"] == "succeeded"
        assert progress["step"] == progress["total_steps"] == 72 and progress["epoch"] == 2

    def test_metrics(self, trained: dict[str, Any]) -> None:
        metrics = trained["result"]["metrics"]
        assert metrics["train_rows"] == 288 and metrics["test_rows"] == 32  # 320 rows split 0.9 (ceil of the test share)
        assert metrics["epochs"] == 2 and metrics["train_steps"] == 72  # num_epochs overrides num_train_epochs
        assert 0 < metrics["train_loss"] < 7
        assert metrics["train_runtime_s"] > 0 and metrics["tokens_per_second"] > 0
        assert metrics["train_tokens"] == pytest.approx(metrics["tokens_per_second"] * metrics["train_runtime_s"], rel=0.01)

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, from inside MLflow's store
    def test_mlflow_run(self, trained: dict[str, Any], tracking_uri: str) -> None:
        import mlflow

        artifacts = trained["result"]["artifacts"]
        client = mlflow.MlflowClient(tracking_uri)
        run = client.get_run(artifacts["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == trained["job"]["job_name"]
        assert run.info.experiment_id == artifacts["mlflow_experiment_id"]
        assert client.get_experiment(run.info.experiment_id).name == "ftctl-tests"
        params = run.data.params
        assert params["lora.r"] == "8" and params["lora.target_modules"] == "all-linear"
        assert params["num_train_epochs"] == "2" and params["learning_rate"] == "0.01"
        assert params["warmup_steps"] == "0.1" and "warmup_ratio" not in params  # translated for transformers 5
        assert params["dataset_text_field"] == "prediction" and params["report_to"] == "none"
        losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)]
        assert len(losses) == 72  # logging_steps 1
        assert losses[-1] < losses[0]
        assert run.data.metrics["train_loss"] == pytest.approx(trained["result"]["metrics"]["train_loss"])
        assert run.data.metrics["tokens_per_second"] > 0


# -- failures, all before training -------------------------------------------------------------------


@needs_ml[0]
@needs_ml[1]
class TestFailures:
    def test_missing_dataset_file_is_a_data_error(self, write_job: JobWriter, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere" / "tickets.csv"
        error = failed_with(write_job(dataset={"name_or_path": str(missing)}), "data")
        assert str(missing) in error["message"]

    def test_prompt_naming_a_missing_column_is_a_data_error(self, write_job: JobWriter) -> None:
        error = failed_with(write_job(prompt={"prompt_template": "Q: {question}\nA: {intent}"}), "data")
        assert "question" in error["message"] and "instruction" in error["message"]

    @pytest.mark.parametrize(("train", "setting"), [
        ({"training_arguments": {**DEMO_TRAINING, "fp16": True}}, "fp16"),
        ({"bnb_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}}, "load_in_4bit"),
    ], ids=["fp16", "4bit"])
    def test_gpu_settings_without_a_gpu_are_unsupported(self, write_job: JobWriter, train: dict[str, Any],
                                                        setting: str) -> None:
        error = failed_with(write_job(train=train), "unsupported")
        assert setting in error["message"] and "needs a GPU" in error["message"]

    @pytest.mark.skipif(HAS_BNB, reason="bitsandbytes is installed: paged optimizers work")
    def test_paged_optimizer_without_bitsandbytes_is_a_dependency_error(self, write_job: JobWriter) -> None:
        job = write_job(train={"training_arguments": {**DEMO_TRAINING, "optim": "paged_adamw_32bit"}})
        error = failed_with(job, "dependency")
        assert "bitsandbytes" in error["message"] and "paged_adamw_32bit" in error["message"]

    @pytest.mark.skipif(HAS_AXOLOTL, reason="axolotl is installed")
    def test_axolotl_not_installed_is_a_dependency_error(self, write_job: JobWriter) -> None:
        job = write_job(train={"framework_type": "axolotl", "axolotl_config": {"adapter": "lora"}})
        error = failed_with(job, "dependency")
        assert error["message"].startswith("axolotl is not installed in this job's environment")

    def test_simulated_resources_failure(self, write_job: JobWriter) -> None:
        failed_with(write_job(), "resources", env={"FTCTL_RUNNER_FAIL": "resources"})

    def test_killed_leaves_no_result(self, write_job: JobWriter) -> None:
        job = write_job()
        proc = run_runner("train", job, env={"FTCTL_RUNNER_FAIL": "killed"})
        assert proc.returncode == -signal.SIGKILL
        result, _ = read_job_files(job)
        assert result is None  # a killed job writes nothing: the backend sees the signal and records `killed`


@needs_ml[0]
@needs_ml[1]
def test_jobs_started_together_share_a_fresh_tracking_store(tmp_path: Path) -> None:
    """Three jobs opening one new sqlite store at once: one creates the tables, none fails (a file lock)."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    code = ("import json, sys, mlflow; from runners import train; "
            f"print(train.jobio.open_experiment(mlflow, {{'tracking_uri': {uri!r}, 'experiment': 'race'}}).experiment_id)")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1


# -- data handling, in-process ----------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process data loading stays offline (read when `datasets` is first imported; ml-stack.md §6)."""
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, "1")


@needs_ml[0]
@needs_ml[1]
@pytest.mark.usefixtures("offline")
class TestData:
    def test_sample_and_split(self) -> None:
        import datasets

        dd = runner.load_data({"type": "project_csv", "name_or_path": str(DEMO_CSV)})
        train, test = runner.sample_and_split(dd, 1.0, 0.9, 42)
        assert (len(train), len(test)) == (288, 32)
        again, _ = runner.sample_and_split(dd, 1.0, 0.9, 42)
        assert train["instruction"] == again["instruction"]  # seeded: the same split every run
        half, half_test = runner.sample_and_split(dd, 0.5, 0.75, 42)
        assert (len(half), len(half_test)) == (120, 40)
        all_train, none = runner.sample_and_split(dd, 1.0, 1.0, 42)
        assert (len(all_train), len(none)) == (320, 0)
        own = datasets.DatasetDict({"train": dd["train"].select(range(10)), "test": dd["train"].select(range(10, 13))})
        train, test = runner.sample_and_split(own, 1.0, 0.5, 42)
        assert (len(train), len(test)) == (10, 3)  # a dataset's own test split is kept
        empty = datasets.DatasetDict({"train": dd["train"].select([])})
        with pytest.raises(runner.JobFailure, match="train split is empty") as info:
            runner.sample_and_split(empty, 1.0, 0.9, 42)
        assert info.value.error_class == "data"

    def test_prediction_column(self) -> None:
        dd = runner.load_data({"type": "project_csv", "name_or_path": str(DEMO_CSV)})
        formatted = runner.format_prediction(dd, "### CUSTOMER: {instruction}\n### ACTION: {intent}", "</s>")
        row = formatted["train"][0]
        assert row["prediction"] == f"### CUSTOMER: {row['instruction']}\n### ACTION: {row['intent']}</s>"

    def test_json_and_jsonl(self, tmp_path: Path) -> None:
        rows = [{"instruction": f"q{i}", "intent": f"a{i}"} for i in range(5)]
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / "d.json").write_text(json.dumps(rows))
        for kind, name in (("project_jsonl", "d.jsonl"), ("project_json", "d.json")):
            dd = runner.load_data({"type": kind, "name_or_path": str(tmp_path / name)})
            assert list(dd) == ["train"] and dd["train"]["instruction"] == [r["instruction"] for r in rows]

    def test_saved_project_dataset(self, tmp_path: Path) -> None:
        import datasets

        saved = tmp_path / "saved"
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"instruction": ["a", "b"], "intent": ["x", "y"]}),
                              "test": datasets.Dataset.from_dict({"instruction": ["c"], "intent": ["z"]})}
                             ).save_to_disk(str(saved))
        dd = runner.load_data({"type": "project", "name_or_path": str(saved)})
        assert sorted(dd) == ["test", "train"] and len(dd["test"]) == 1


# -- settings helpers, no ML stack needed ------------------------------------------------------------


def test_warmup_ratio_becomes_warmup_steps() -> None:
    args, notes = runner.legacy_training_arguments({"warmup_ratio": 0.03, "evaluation_strategy": "epoch",
                                                    "max_seq_length": 512, "overwrite_output_dir": True})
    assert args == {"warmup_steps": 0.03, "eval_strategy": "epoch", "max_length": 512}
    assert len(notes) == 4
    assert runner.legacy_training_arguments({"warmup_ratio": 0.1, "warmup_steps": 5})[0] == {"warmup_steps": 5}
    with pytest.raises(runner.JobFailure) as info:
        runner.legacy_training_arguments({"warmup_ratio": 1.5})
    assert info.value.error_class == "config"


def test_gpu_only_settings() -> None:
    runner.check_hardware({"fp16": True}, {"load_in_4bit": True}, has_gpu=True)
    runner.check_hardware({"fp16": False, "bf16": False}, {}, has_gpu=False)
    for args, bnb in (({"bf16": True}, None), ({}, {"load_in_8bit": True})):
        with pytest.raises(runner.JobFailure) as info:
            runner.check_hardware(args, bnb, has_gpu=False)
        assert info.value.error_class == "unsupported"
    assert runner.needs_bitsandbytes("paged_adamw_8bit") and runner.needs_bitsandbytes("adamw_bnb_8bit")
    assert not runner.needs_bitsandbytes("adamw_torch") and not runner.needs_bitsandbytes(None)


def test_template_fields() -> None:
    assert runner.template_fields("{a} and {b!r} and {c:>4} and {d[0]} {{literal}}") == ["a", "b", "c", "d"]
    for bad in ("{0}", "{}", "{unclosed"):
        with pytest.raises(runner.JobFailure) as info:
            runner.template_fields(bad)
        assert info.value.error_class == "data"


class FakeTokenizer:
    def __init__(self, pad: str | None, unk: str | None, eos: str | None, vocab: list[str]) -> None:
        self.pad_token, self.unk_token, self.eos_token, self.vocab = pad, unk, eos, vocab

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.vocab)}


@pytest.mark.parametrize(("tokens", "rule", "chosen"), [
    (("<pad>", "<unk>", "</s>", []), "pad_token", "<pad>"),
    ((None, "<unk>", "</s>", []), "unk_token", "<unk>"),
    ((None, None, "</s>", ["a", "<|reserved_special_token_0|>", "b"]), "vocabulary", "<|reserved_special_token_0|>"),
    ((None, None, "</s>", ["a", "b"]), "eos_token", "</s>"),
])
def test_pad_token_fallback_chain(tokens: tuple[Any, ...], rule: str, chosen: str) -> None:
    tok = FakeTokenizer(*tokens)
    assert runner.configure_padding(tok) == rule
    assert tok.pad_token == chosen
