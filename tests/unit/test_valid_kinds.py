"""One valid manifest per kind: the shipped examples and the demo validate cleanly, and load the
values they say."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.diagnostics import Severity
from reconciler.engine import validate
from reconciler.models import MODELS, IdRef

SPECS = Path(__file__).resolve().parents[2] / "specs"


def load(folder: Path):  # type: ignore[no-untyped-def]
    report = validate([str(folder)], offline=True, environ={})
    problems = [d for d in report.diagnostics if d.severity is not Severity.INFO]
    assert problems == [], problems
    return {(m.kind, m.name): m.resource for m in report.manifests}


@pytest.fixture(scope="module")
def examples():  # type: ignore[no-untyped-def]
    return load(SPECS / "examples")


def test_every_kind_has_a_valid_example(examples) -> None:  # type: ignore[no-untyped-def]
    assert {kind for kind, _ in examples} == set(MODELS)


@pytest.mark.parametrize(
    ("kind", "name", "field", "value"),
    [
        ("Dataset", "sql-create-context", "huggingface_name", "philschmid/sql-create-context-copy"),
        ("Dataset", "sql-local", "type", "project_csv"),
        ("Model", "bloom-1b1", "huggingface_model_name", "bigscience/bloom-1b1"),
        ("Prompt", "sql-prompt", "completion_template", "{answer}"),
        ("Config", "lora-r16", "config", {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM"}),
        ("Config", "train-1-epoch", "config", {"num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4, "learning_rate": 2.0e-4, "lr_scheduler_type": "constant"}),
        ("Adapter", "bloom-sql-community", "model", "bloom-1b1"),
        ("FineTuningJob", "bloom-sql", "adapter_name", "bloom-sql-v1"),
        ("FineTuningJob", "bloom-sql", "train_test_split", 0.9),
        ("FineTuningJob", "bloom-sql-axolotl", "framework_type", "axolotl"),
        ("EvaluationJob", "bloom-sql-eval", "eval_dataset_fraction", 0.5),
        ("ModelExport", "bloom-sql", "merge", True),
        ("ModelExport", "bloom-sql-endpoint", "type", "cml_model"),
    ],
)
def test_example_values(examples, kind: str, name: str, field: str, value: object) -> None:  # type: ignore[no-untyped-def]
    assert getattr(examples[(kind, name)].spec, field) == value


def test_nested_values(examples) -> None:  # type: ignore[no-untyped-def]
    job = examples[("FineTuningJob", "bloom-sql")].spec
    assert job.resources.gpu == 1 and job.resources.memory == 32
    assert job.training_arguments == {"num_train_epochs": 2, "learning_rate": 1.0e-4, "per_device_train_batch_size": 2}
    evaluation = examples[("EvaluationJob", "bloom-sql-eval")].spec
    assert [(c.model, c.adapter) for c in evaluation.combinations] == [("bloom-1b1", None), ("bloom-1b1", "bloom-sql-v1")]
    gate = examples[("ModelExport", "bloom-sql")].spec.gate
    assert (gate.evaluation, gate.metric, gate.min) == ("bloom-sql-eval", "rougeL", 0.3)


def test_id_references_are_accepted_without_a_store(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "apiVersion: ftctl/v1\nkind: Prompt\nmetadata: {name: p}\nspec:\n"
        "  dataset: {id: 8ba6f0d8-22a8-4a1a-a823-1dba88f2c377}\n"
        "  prompt_template: '{question}'\n  input_template: ''\n  completion_template: ''\n"
    )
    report = validate([str(tmp_path)], offline=True, environ={})
    assert not report.has_errors()
    assert report.manifests[0].resource.spec.dataset == IdRef(id="8ba6f0d8-22a8-4a1a-a823-1dba88f2c377")
    assert [d.code for d in report.diagnostics] == ["RF-004"]


def test_demo_project_is_valid_once_its_model_is_built(tmp_path: Path) -> None:
    shutil.copytree(SPECS / "demo", tmp_path / "specs" / "demo")
    (tmp_path / ".app" / "models" / "tiny-llama").mkdir(parents=True)
    resources = load(tmp_path / "specs" / "demo")
    assert len(resources) == 9
    assert resources[("FineTuningJob", "demo-ticketing-lora")].spec.lora_config == "demo-lora"
