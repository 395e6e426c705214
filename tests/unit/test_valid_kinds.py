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
        ("Dataset", "sql-create-context", "huggingface_name", "b-mc2/sql-create-context"),
        ("Dataset", "sql-local", "type", "project_csv"),
        ("Model", "bloom-560m", "huggingface_model_name", "bigscience/bloom-560m"),
        ("Prompt", "sql-prompt", "completion_template", "{answer}"),
        ("Config", "lora-r16", "config", {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM"}),
        ("Config", "train-1-epoch", "config", {"num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4, "learning_rate": 2.0e-4, "lr_scheduler_type": "constant"}),
        ("Adapter", "bloom-sql-community", "model", "bloom-560m"),
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
    assert [(c.model, c.adapter) for c in evaluation.combinations] == [("bloom-560m", None), ("bloom-560m", "bloom-sql-v1")]
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
    shutil.copytree(SPECS / "demo", tmp_path / "specs" / "demo", ignore=shutil.ignore_patterns("models"))
    (tmp_path / "ftctl.toml").write_text("")  # the project root, as .git marks the repository's
    (tmp_path / "specs" / "demo" / "models" / "tiny-llama").mkdir(parents=True)
    resources = load(tmp_path / "specs" / "demo")
    assert len(resources) == 9
    assert resources[("FineTuningJob", "demo-ticketing-lora")].spec.lora_config == "demo-lora"


# --------------------------------------------------------------------------------------------------
# One complete, self-contained manifest per kind: each test writes that manifest and what it refers
# to into an empty folder, validates it offline (no error, no warning; the only note allowed is
# ON-001, the skipped Hub check) and checks the values it loaded, nested ones included.

TICKETS_CSV = (
    "instruction,intent,response\n"
    "I want to cancel my ticket,cancel_ticket,I can help you cancel it.\n"
    "How do I get a refund?,get_refund,Refunds take 5-7 days.\n"
    "Can I change the seat?,change_seat,Yes: which seat would you like?\n"
)

DATASET = """\
apiVersion: ftctl/v1
kind: Dataset
metadata:
  name: tickets
  labels: {team: support, stage: dev}
  annotations: {owner: "ml-platform@example.com"}
spec:
  type: project_csv
  location: data/tickets.csv
  description: Customer messages to an event-ticketing desk, labelled with the action to take.
"""

MODEL = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: bloom-1b1}
spec:
  type: huggingface
  huggingface_model_name: bigscience/bloom-1b1
  framework: pytorch
  hf_token_env: HUGGINGFACE_ACCESS_TOKEN
  description: BLOOM 1.1B, the Studio's default base model.
"""

PROMPT = """\
apiVersion: ftctl/v1
kind: Prompt
metadata: {name: ticketing}
spec:
  type: in_place
  dataset: tickets
  prompt_template: "<Instruction>: {instruction}\\n<Intent>: {intent}\\n<Response>: {response}"
  input_template: "<Instruction>: {instruction}\\n<Intent>: "
  completion_template: "{intent}"
  description: Classify a customer message into an intent.
"""

CONFIG = """\
apiVersion: ftctl/v1
kind: Config
metadata: {name: lora-r16}
spec:
  type: lora_config
  model: bloom-1b1
  description: LoRA on the attention projections.
  config:
    r: 16
    lora_alpha: 32
    lora_dropout: 0.05
    bias: none
    task_type: CAUSAL_LM
    target_modules: [query_key_value]
"""

TRAINING = """\
apiVersion: ftctl/v1
kind: Config
metadata: {name: train-2-epochs}
spec:
  type: training_arguments
  config:
    num_train_epochs: 2
    per_device_train_batch_size: 1
    gradient_accumulation_steps: 4
    learning_rate: 2.0e-4
    lr_scheduler_type: constant
    optim: paged_adamw_32bit
    fp16: true
    logging_steps: 1
"""

FINE_TUNING_JOB = """\
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: bloom-ticketing}
spec:
  framework_type: legacy
  base_model: bloom-1b1
  dataset: tickets
  prompt: ticketing
  adapter_name: bloom-ticketing-v1
  out_dir: adapters
  num_epochs: 3
  learning_rate: 1.0e-4
  dataset_fraction: 1.0
  train_test_split: 0.5
  lora_config: lora-r16
  training_arguments: train-2-epochs
  bnb_config:
    load_in_4bit: true
    bnb_4bit_quant_type: nf4
    bnb_4bit_compute_dtype: float16
    bnb_4bit_use_double_quant: true
  resources: {cpu: 4, memory: 32, gpu: 1, num_workers: 2, dist_cpu: 2, dist_gpu: 1, dist_memory: 16}
  hf_token_env: HUGGINGFACE_ACCESS_TOKEN
"""

ADAPTER = """\
apiVersion: ftctl/v1
kind: Adapter
metadata: {name: bloom-ticketing-community}
spec:
  type: project
  model: bloom-1b1
  location: adapters/community
  prompt: ticketing
  fine_tuning_job: bloom-ticketing
  description: An adapter someone trained earlier, imported as it is.
"""

EVALUATION_JOB = """\
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: bloom-ticketing-eval}
spec:
  type: mlflow
  dataset: tickets
  prompt: ticketing
  combinations:
    - {model: bloom-1b1}
    - {model: bloom-1b1, adapter: bloom-ticketing-v1}
  generation_config: {do_sample: false, max_new_tokens: 24, num_beams: 1}
  eval_dataset_fraction: 0.5
  selected_features: [instruction, intent]
  resources: {cpu: 2, gpu: 1, memory: 16}
"""

MODEL_EXPORT = """\
apiVersion: ftctl/v1
kind: ModelExport
metadata: {name: bloom-ticketing-endpoint}
spec:
  type: cml_model
  base_model: bloom-1b1
  adapter: bloom-ticketing-v1
  model_name: bloom-ticketing
  merge: false
  generation_config: {max_new_tokens: 24}
  resources: {cpu: 4, memory: 16, gpu: 1}
  gate: {evaluation: bloom-ticketing-eval, metric: rougeL, min: 0.3}
  description: Serve the ticketing adapter once it beats the gate.
"""


def project(tmp_path: Path, *docs: str) -> dict[tuple[str, str], object]:
    """Write the documents (and the files they name) into one file, validate, return resources."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tickets.csv").write_text(TICKETS_CSV, encoding="utf-8")
    (tmp_path / "adapters" / "community").mkdir(parents=True)
    (tmp_path / "adapters" / "community" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (tmp_path / "project.yaml").write_text("---\n".join(docs), encoding="utf-8")
    report = validate([str(tmp_path)], offline=True, environ={})
    shown = "\n".join(f"{d.code} {d.severity} {d.location} {d.summary}" for d in report.diagnostics)
    assert {d.code for d in report.diagnostics} <= {"ON-001"}, shown
    assert report.documents == len(docs) == len(report.manifests)
    return {(m.kind, m.name): m.resource for m in report.manifests}


def test_valid_dataset(tmp_path: Path) -> None:
    dataset = project(tmp_path, DATASET)[("Dataset", "tickets")]
    assert dataset.metadata.labels == {"team": "support", "stage": "dev"}  # type: ignore[attr-defined]
    assert dataset.metadata.annotations == {"owner": "ml-platform@example.com"}  # type: ignore[attr-defined]
    spec = dataset.spec  # type: ignore[attr-defined]
    assert (spec.type, spec.location, spec.huggingface_name) == ("project_csv", "data/tickets.csv", None)
    assert spec.description.startswith("Customer messages")


def test_valid_model(tmp_path: Path) -> None:
    spec = project(tmp_path, MODEL)[("Model", "bloom-1b1")].spec  # type: ignore[attr-defined]
    assert (spec.type, spec.huggingface_model_name, spec.framework) == ("huggingface", "bigscience/bloom-1b1", "pytorch")
    assert spec.hf_token_env == "HUGGINGFACE_ACCESS_TOKEN" and spec.location is None


def test_valid_prompt(tmp_path: Path) -> None:
    spec = project(tmp_path, DATASET, PROMPT)[("Prompt", "ticketing")].spec  # type: ignore[attr-defined]
    assert spec.dataset == "tickets"
    assert spec.prompt_template == "<Instruction>: {instruction}\n<Intent>: {intent}\n<Response>: {response}"
    assert spec.input_template == "<Instruction>: {instruction}\n<Intent>: "
    assert spec.completion_template == "{intent}"


def test_valid_config(tmp_path: Path) -> None:
    spec = project(tmp_path, MODEL, CONFIG)[("Config", "lora-r16")].spec  # type: ignore[attr-defined]
    assert (spec.type, spec.model) == ("lora_config", "bloom-1b1")
    assert spec.config == {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "bias": "none",
        "task_type": "CAUSAL_LM",
        "target_modules": ["query_key_value"],
    }


def test_valid_fine_tuning_job(tmp_path: Path) -> None:
    resources = project(tmp_path, DATASET, MODEL, PROMPT, CONFIG, TRAINING, FINE_TUNING_JOB)
    job = resources[("FineTuningJob", "bloom-ticketing")]
    assert job.adapter_name == "bloom-ticketing-v1"  # type: ignore[attr-defined]
    spec = job.spec  # type: ignore[attr-defined]
    assert (spec.framework_type, spec.base_model, spec.dataset, spec.prompt) == ("legacy", "bloom-1b1", "tickets", "ticketing")
    assert (spec.num_epochs, spec.learning_rate, spec.dataset_fraction, spec.train_test_split) == (3, 1.0e-4, 1.0, 0.5)
    assert (spec.lora_config, spec.training_arguments, spec.out_dir) == ("lora-r16", "train-2-epochs", "adapters")
    assert spec.bnb_config == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
        "bnb_4bit_use_double_quant": True,
    }
    res = spec.resources
    assert (res.cpu, res.memory, res.gpu, res.num_workers) == (4, 32, 1, 2)
    assert (res.dist_cpu, res.dist_gpu, res.dist_memory) == (2, 1, 16)


def test_valid_adapter(tmp_path: Path) -> None:
    resources = project(tmp_path, DATASET, MODEL, PROMPT, FINE_TUNING_JOB.replace("  lora_config: lora-r16\n  training_arguments: train-2-epochs\n", ""), ADAPTER)
    spec = resources[("Adapter", "bloom-ticketing-community")].spec  # type: ignore[attr-defined]
    assert (spec.type, spec.model, spec.location) == ("project", "bloom-1b1", "adapters/community")
    assert (spec.prompt, spec.fine_tuning_job) == ("ticketing", "bloom-ticketing")


def test_valid_evaluation_job(tmp_path: Path) -> None:
    resources = project(tmp_path, DATASET, MODEL, PROMPT, CONFIG, TRAINING, FINE_TUNING_JOB, EVALUATION_JOB)
    spec = resources[("EvaluationJob", "bloom-ticketing-eval")].spec  # type: ignore[attr-defined]
    assert (spec.type, spec.dataset, spec.prompt) == ("mlflow", "tickets", "ticketing")
    assert [(c.model, c.adapter) for c in spec.combinations] == [("bloom-1b1", None), ("bloom-1b1", "bloom-ticketing-v1")]
    assert spec.generation_config == {"do_sample": False, "max_new_tokens": 24, "num_beams": 1}
    assert (spec.eval_dataset_fraction, spec.selected_features) == (0.5, ["instruction", "intent"])
    assert (spec.resources.cpu, spec.resources.gpu, spec.resources.memory) == (2, 1, 16)


def test_valid_model_export(tmp_path: Path) -> None:
    docs = (DATASET, MODEL, PROMPT, CONFIG, TRAINING, FINE_TUNING_JOB, EVALUATION_JOB, MODEL_EXPORT)
    export = project(tmp_path, *docs)[("ModelExport", "bloom-ticketing-endpoint")]
    assert export.model_name == "bloom-ticketing"  # type: ignore[attr-defined]
    spec = export.spec  # type: ignore[attr-defined]
    assert (spec.type, spec.base_model, spec.adapter, spec.merge) == ("cml_model", "bloom-1b1", "bloom-ticketing-v1", False)
    assert spec.generation_config == {"max_new_tokens": 24}
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.gpu) == (4, 16, 1)
    assert (spec.gate.evaluation, spec.gate.metric, spec.gate.min, spec.gate.max) == ("bloom-ticketing-eval", "rougeL", 0.3, None)


def test_each_kind_has_a_self_contained_test() -> None:
    tested = {"Dataset", "Model", "Prompt", "Config", "FineTuningJob", "Adapter", "EvaluationJob", "ModelExport"}
    assert tested == set(MODELS)
    assert all(f"test_valid_{_snake(kind)}" in globals() for kind in MODELS)


def _snake(kind: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(kind))
