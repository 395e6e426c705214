"""The arithmetic of cost estimates (reconciler.estimates) over values: manifests loaded from text,
local facts made here, changes made by hand. Each figure is checked against the rule the module
states, and the basis names the numbers that went in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.estimates import DEFAULT_DEVICES, DeviceRate, EstimateSettings, estimate_plan
from reconciler.facts import LocalFacts, TableFact, parameter_count, parameters_from_name
from reconciler.localfiles import read_table
from reconciler.manifests import Manifest, load_paths
from reconciler.plan import Action, Change, CostEstimate, Launch
from reconciler.safeio import ReadRoots

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "hidden_act": "silu", "model_type": "llama", "tie_word_embeddings": False, "vocab_size": 512}
LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "hidden_act": "silu", "model_type": "llama", "tie_word_embeddings": False, "vocab_size": 128256}


def test_parameter_count_from_config_json() -> None:
    assert parameter_count(TINY) == 2 * (2 * 64 * 64 + 2 * 64 * 2 * 16 + 3 * 64 * 128) + 2 * 512 * 64 == 139_264
    assert parameter_count(LLAMA_8B) == pytest.approx(8.03e9, rel=1e-3)
    gpt2 = {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "model_type": "gpt2"}  # plain MLP, tied
    assert parameter_count(gpt2) == pytest.approx(124e6, rel=0.05)
    assert parameter_count({"architectures": ["LlamaForCausalLM"]}) is None


@pytest.mark.parametrize(("name", "count"), [("bigscience/bloom-1b1", 1_100_000_000), ("meta-llama/Llama-3.1-8B-Instruct", 8e9),
                                             ("bigscience/bloom-560m", 560e6), ("Qwen/Qwen2.5-0.5B", 500e6), ("gpt2", None)])
def test_parameters_from_a_hub_name(name: str, count: float | None) -> None:
    assert parameters_from_name(name) == (int(count) if count is not None else None)


def test_a_dataset_file_gives_rows_and_mean_characters(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("q,a\nabcd,ef\nabcdefgh,ij\n", encoding="utf-8")
    fact = read_table(str(path), "project_csv", roots=ReadRoots(str(tmp_path)))
    assert (fact.rows, fact.mean_chars) == (2, 8.0)


PROJECT = """
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: data}
spec: {type: project_csv, location: data.csv}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: tiny}
spec: {type: project, location: tiny}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: hub-1b}
spec: {type: huggingface, huggingface_model_name: org/m-1b}
---
apiVersion: ftctl/v1
kind: Prompt
metadata: {name: p}
spec: {dataset: data, prompt_template: "Q: {q}\\nA: {a}", input_template: "Q: {q}\\nA:", completion_template: "{a}"}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: cpu-job}
spec:
  base_model: tiny
  dataset: data
  prompt: p
  dataset_fraction: 0.5
  train_test_split: 0.8
  training_arguments: {num_train_epochs: 2}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: gpu-job}
spec:
  base_model: hub-1b
  dataset: data
  prompt: p
  train_test_split: 0.8
  num_epochs: 1
  resources: {gpu: 2, gpu_label_id: 7}
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: ev}
spec:
  dataset: data
  prompt: p
  generation_config: {max_new_tokens: 5}
  combinations: [{model: tiny}, {model: tiny, adapter: cpu-job}]
"""


@pytest.fixture
def manifests(tmp_path: Path) -> list[Manifest]:
    (tmp_path / "m.yaml").write_text(dedent(PROJECT), encoding="utf-8")
    loaded = load_paths([str(tmp_path)], roots=ReadRoots(str(tmp_path)))
    assert not [d for d in loaded.diagnostics if d.severity.is_error()], loaded.diagnostics
    return loaded.manifests


def _facts(tmp_path: Path) -> LocalFacts:
    return LocalFacts(tables={str(tmp_path / "data.csv"): TableFact(("q", "a"), rows=100, mean_chars=36.0)},
                      model_parameters={str(tmp_path / "tiny"): 139_264})


def _launching(*addresses: str, later: tuple[str, ...] = ()) -> list[Change]:
    now = [Change(a.split("/")[0], a.split("/")[1], Action.CREATE, "new", launches=(Launch("j", "train", 1, {}),)) for a in addresses]
    return now + [Change(a.split("/")[0], a.split("/")[1], Action.CREATE, "waits", waits_for=("x",)) for a in later]


def _estimate(changes: list[Change], manifests: list[Manifest], tmp_path: Path, settings: EstimateSettings | None = None) -> CostEstimate:
    estimate = estimate_plan(changes, manifests, _facts(tmp_path), settings or EstimateSettings())
    assert estimate is not None
    return estimate


def test_a_cpu_training(manifests: list[Manifest], tmp_path: Path) -> None:
    job = _estimate(_launching("FineTuningJob/cpu-job"), manifests, tmp_path).jobs[0]
    per_row = (36 + len("Q: \nA: ")) / 4  # 10.75
    tokens = math.ceil(100 * 0.5 * 0.8 * 2 * per_row)  # 860
    assert (job.device, job.devices, job.tokens, job.known, job.later) == ("cpu", 1, tokens, True, False)
    assert job.tokens_per_second == pytest.approx(5571.0)  # the tiny model is cpu's reference size
    assert job.hours == pytest.approx(tokens / 5571 / 3600)
    assert job.device_hours == pytest.approx(job.hours)
    assert job.cost == pytest.approx(job.device_hours * DEFAULT_DEVICES["cpu"].price_per_hour)
    for figure in ("100 rows x fraction 0.5 x split 0.8 x 2 epochs = 80 rows", "(36 chars a row + 7 of template) / 4 = 10.8 tokens a row",
                   "139k parameters (config.json)", "860 tokens at 5,571 tokens/s per cpu"):
        assert figure in job.basis, job.basis


def test_a_gpu_training_on_two_gpus_of_an_accelerator_label(manifests: list[Manifest], tmp_path: Path) -> None:
    settings = EstimateSettings(devices={**DEFAULT_DEVICES, "a100": DeviceRate(10_000.0, 1_000_000_000, 4.0)},
                                accelerator_labels={7: "a100"})
    estimate = _estimate(_launching("FineTuningJob/gpu-job"), manifests, tmp_path, settings)
    job = estimate.jobs[0]
    tokens = math.ceil(100 * 1.0 * 0.8 * 1 * 10.75)
    assert (job.device, job.devices, job.tokens) == ("a100", 2, tokens)
    assert job.tokens_per_second == pytest.approx(10_000.0)  # org/m-1b: 1B by its name, a100's reference size
    assert job.hours == pytest.approx(tokens / (10_000 * 2 * 0.9) / 3600)  # two GPUs at 0.9 scaling
    assert job.device_hours == pytest.approx(2 * job.hours)
    assert (estimate.gpu_hours, estimate.cpu_hours, estimate.cost) == (pytest.approx(job.device_hours), 0.0,
                                                                       pytest.approx(job.device_hours * 4.0))
    assert "from the name org/m-1b" in job.basis and "at 0.9 scaling" in job.basis
    without = _estimate(_launching("FineTuningJob/gpu-job"), manifests, tmp_path).jobs[0]
    assert without.device == "gpu" and without.tokens_per_second == pytest.approx(8000.0)  # no label mapping: the gpu default


def test_throughput_scales_inversely_with_parameters() -> None:
    rate = DeviceRate(5571.0, 139_264, 0.1)
    assert rate.throughput(139_264 * 10) == pytest.approx(557.1)


def test_an_evaluation_later_counts_rows_of_the_test_split_and_generated_tokens(manifests: list[Manifest], tmp_path: Path) -> None:
    job = _estimate(_launching(later=("EvaluationJob/ev",)), manifests, tmp_path).jobs[0]
    rows = 100 * 1.0 * (1 - 0.8) * 2  # the adapter's training kept 20% for testing; two combinations
    per_row = (36 + len("Q: \nA:")) / 4 + 5
    assert (job.later, job.devices, job.tokens) == (True, 2, math.ceil(rows * per_row))
    assert job.tokens_per_second == pytest.approx(5571.0 * 3)  # inference: a third of a training step's compute
    assert job.hours == pytest.approx(job.tokens / (5571 * 3 * 2) / 3600)  # the combinations run side by side
    assert "+ 5 generated tokens a row" in job.basis


def test_a_job_with_unknown_inputs_is_listed_and_counts_nothing(manifests: list[Manifest], tmp_path: Path) -> None:
    facts = LocalFacts()  # the dataset file was not counted, the model's config not read
    estimate = estimate_plan(_launching("FineTuningJob/cpu-job", "FineTuningJob/gpu-job"), manifests, facts, EstimateSettings())
    assert estimate is not None
    assert [j.known for j in estimate.jobs] == [False, False] and len(estimate.unknown()) == 2
    assert (estimate.gpu_hours, estimate.cpu_hours, estimate.cost) == (0.0, 0.0, 0.0)
    assert estimate.jobs[0].basis.startswith("unknown: rows of dataset 'data'")


def test_nothing_launched_no_estimate(manifests: list[Manifest], tmp_path: Path) -> None:
    noop = [Change("FineTuningJob", "cpu-job", Action.NOOP, "in sync")]
    assert estimate_plan(noop, manifests, _facts(tmp_path), EstimateSettings()) is None


def test_the_estimate_round_trips_in_the_plan_file(manifests: list[Manifest], tmp_path: Path) -> None:
    from reconciler.plan import Plan

    estimate = _estimate(_launching("FineTuningJob/cpu-job", later=("EvaluationJob/ev",)), manifests, tmp_path)
    plan = Plan(store="s", serial=0, read={}, estimate=estimate)
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.digest() == plan.digest()
    assert json.loads(plan.to_json())["estimate"]["cpu_hours"] == pytest.approx(sum(j.device_hours for j in estimate.jobs))
