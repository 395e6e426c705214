"""Inputs that once passed validation and failed only when a job ran or an apply wrote (issue 11,
item 6): each case, through the real `validate`, now gets its diagnostic code before anything runs.

The table starts from the valid project of `rules_base/` (as test_rules_table.py does) and adds one
small manifest per case. Below it, property tests: a prompt template is accepted exactly when every
placeholder is a plain `{column}` over the dataset's columns; an integer outside SQLite's 64-bit range
anywhere in a manifest is SC-005, and `ftctl plan` / `apply` on a real store refuse it cleanly
instead of failing with an OverflowError part way through.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent, indent

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.diagnostics import Severity
from reconciler.engine import validate
from reconciler.models.export import EVALUATION_METRICS

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.helpers import FTCTL, SEED, cli_env, show, studio_row_ids  # noqa: E402
from tests.fakes.studio_store import create_studio_store  # noqa: E402

BASE = Path(__file__).resolve().parent / "rules_base"
HEADER = "apiVersion: ftctl/v1\n"


def config(config_type: str, body: str) -> str:
    return HEADER + f"kind: Config\nmetadata: {{name: case}}\nspec: {{type: {config_type}, config: {body}}}\n"


def prompt(template: str, metadata: str = "{name: case}") -> str:
    return HEADER + dedent(f"""\
        kind: Prompt
        metadata: {metadata}
        spec:
          dataset: base-data
          prompt_template: {json.dumps(template, ensure_ascii=False)}
          input_template: "Q: {{question}}"
          completion_template: "{{answer}}"
        """)


def job(extra: str) -> str:
    return HEADER + "kind: FineTuningJob\nmetadata: {name: case}\nspec:\n  base_model: base-model\n  dataset: base-data\n" \
        "  prompt: base-prompt\n" + indent(dedent(extra), "  ")


def export(extra: str, export_type: str = "model_registry") -> str:
    return HEADER + f"kind: ModelExport\nmetadata: {{name: case}}\nspec:\n  type: {export_type}\n  base_model: base-model\n" \
        "  adapter: base-job\n" + indent(dedent(extra), "  ")


def dataset(metadata: str) -> str:
    return HEADER + f"kind: Dataset\nmetadata: {metadata}\nspec: {{type: project_csv, location: data.csv}}\n"


BIG = str(2**64)
# (case id, case.yaml, the code it must raise). Each case raises its code and no other error.
CASES: list[tuple[str, str, str]] = [
    # library enums and ranges, from the generated body schemas
    ("optim", config("training_arguments", "{optim: sgdx}"), "CF-102"),
    ("lr_scheduler_type", config("training_arguments", "{lr_scheduler_type: bogus}"), "CF-102"),
    ("save_strategy", config("training_arguments", "{save_strategy: sometimes}"), "CF-102"),
    ("warmup_steps", config("training_arguments", "{warmup_steps: -3}"), "CF-102"),
    ("batch_size", config("training_arguments", "{per_device_train_batch_size: 0}"), "CF-102"),
    ("task_type", config("lora_config", "{task_type: BOGUS}"), "CF-102"),
    ("lora_r", config("lora_config", "{r: 0}"), "CF-102"),
    ("lora_dropout", config("lora_config", "{lora_dropout: 1.5}"), "CF-102"),
    ("max_new_tokens", config("generation_config", "{max_new_tokens: 0}"), "CF-102"),
    ("top_p", config("generation_config", "{top_p: 1.5}"), "CF-102"),
    ("4bit_and_8bit", config("bitsandbytes_config", "{load_in_4bit: true, load_in_8bit: true}"), "CF-106"),
    ("inline_4bit_and_8bit", job("bnb_config: {load_in_4bit: true, load_in_8bit: true}\n"), "CF-106"),
    # templates: only plain {column} fields
    ("template_attribute", prompt("{question.__class__}"), "PR-102"),
    ("template_index", prompt("{question[0]}"), "PR-102"),
    ("template_conversion", prompt("{question!r}"), "PR-102"),
    ("template_format_spec", prompt("{question:>100000000}"), "PR-102"),
    ("template_nested_spec", prompt("{question:{answer}}"), "PR-102"),
    # integers beyond SQLite's 64 bits, wherever they are (SC-005), and past the sane bound of a
    # known count (SC-002, from the model's bound)
    ("int_negative", job(f"resources: {{gpu_label_id: -{BIG}}}\n"), "SC-005"),
    ("int_config_body", config("lora_config", f"{{r: {BIG}}}"), "SC-005"),
    ("int_user_config", job(f"user_config: {{nested: [1, {BIG}]}}\n"), "SC-005"),
    # more digits than Python converts (4,300): still an integer too big, not a YAML tag problem
    ("int_5000_digits", job(f"user_config: {{nested: {'9' * 5000}}}\n"), "SC-005"),
    ("int_spec_field", job(f"num_epochs: {BIG}\n"), "SC-002"),
    ("int_resources", job(f"resources: {{cpu: {BIG}}}\n"), "SC-002"),
    ("int_retries", export(f"retries: {BIG}\n"), "SC-002"),
    ("int_endpoint", export(f"resources: {{gpu: {BIG}}}\n", "cml_model"), "SC-002"),
    ("memory_typo", job("resources: {memory: 160000}\n"), "SC-002"),
    ("epochs_typo", job("num_epochs: 1000000\n"), "SC-002"),
    ("eval_gpu_typo", HEADER + "kind: EvaluationJob\nmetadata: {name: case}\nspec:\n  dataset: base-data\n  prompt: base-prompt\n"
     "  combinations: [{model: base-model}]\n  resources: {cpu: 2, gpu: 500, memory: 8}\n", "SC-002"),
    # endpoint resources and gates
    ("endpoint_cpu", export("resources: {cpu: -1}\n", "cml_model"), "EX-104"),
    ("endpoint_memory", export("resources: {memory: 0}\n", "cml_model"), "EX-104"),
    ("endpoint_gpu", export("resources: {gpu: -1}\n", "cml_model"), "EX-104"),
    ("gate_nan", export("gate: {evaluation: base-eval, metric: rougeL, min: .nan}\n"), "EX-105"),
    ("gate_inf", export("gate: {evaluation: base-eval, metric: rougeL, max: .inf}\n"), "EX-105"),
    ("gate_min_above_max", export("gate: {evaluation: base-eval, metric: rougeL, min: 0.9, max: 0.1}\n"), "EX-105"),
    ("gate_metric", export("gate: {evaluation: base-eval, metric: rouge_l, min: 0.1}\n"), "EX-106"),
    # files, annotations and names
    ("user_script", job("user_script: scripts/missing.py\n"), "FT-106"),
    ("store_id", dataset("{name: case, annotations: {ftctl.io/store-id: garbage}}"), "NM-005"),
    ("annotation_typo", dataset("{name: case, annotations: {ftctl.io/protectd: 'true'}}"), "NM-006"),
    ("bidi_override", dataset('{name: "case\\u202Etxt"}'), "NM-007"),
    ("zero_width", dataset('{name: "ca\\u200Bse"}'), "NM-007"),
    ("not_nfc", dataset('{name: "cafe\\u0301"}'), "NM-007"),
    ("homoglyph", dataset('{name: "b\\u0430se-data"}'), "NM-008"),
    ("homoglyph_greek", dataset('{name: "base-d\\u03B1ta"}'), "NM-008"),
]


def run_validate(root: Path, text: str, name: str = "case.yaml") -> list:
    shutil.copytree(BASE, root, dirs_exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    return validate([str(root)], offline=True, environ={}).diagnostics


@pytest.mark.parametrize(("case", "text", "code"), CASES, ids=[c[0] for c in CASES])
def test_gap_is_caught(case: str, text: str, code: str, tmp_path: Path) -> None:
    diags = run_validate(tmp_path / "project", text)
    shown = "\n".join(f"  {d.code} {d.location} {d.summary}" for d in diags)
    assert code in {d.code for d in diags}, f"{case}: {code} not raised:\n{shown}"
    errors = {d.code for d in diags if d.severity is Severity.ERROR}
    assert errors <= {code}, f"{case}: other errors besides {code}:\n{shown}"
    assert all(d.location is not None and d.location.file.endswith("case.yaml") for d in diags if d.code == code), shown


def test_upper_case_yaml_files_in_a_folder_are_read(tmp_path: Path) -> None:
    """A folder's *.YAML / *.YML files are manifests like *.yaml ones, not silently skipped."""
    diags = run_validate(tmp_path / "project", job("user_script: missing.py\n"), name="JOB.YAML")
    assert [d.code for d in diags if d.severity is Severity.ERROR] == ["FT-106"]
    (tmp_path / "project" / "JOB.YAML").rename(tmp_path / "project" / "job.Yml")
    assert "FT-106" in {d.code for d in validate([str(tmp_path / "project")], offline=True, environ={}).diagnostics}


def test_plain_names_and_plain_templates_raise_nothing(tmp_path: Path) -> None:
    """The near misses of the table stay valid: a Latin-only name near another, greedy decoding at
    temperature 0, an {{escaped}} brace, a label-prefixed metric, a real store id."""
    text = "\n---\n".join([
        dataset("{name: base-data-2, annotations: {ftctl.io/store-id: 6f1c2b1e-4d0a-4a57-9d0e-0f7c7c1a2b3c}}"),
        config("generation_config", "{max_new_tokens: 1, temperature: 0.0, top_p: 1.0}"),
        prompt("{{literal}} {question}"),
        export("gate: {evaluation: base-eval, metric: base-model.rougeL, min: 0.1, max: 0.1}\n"),
    ])
    diags = run_validate(tmp_path / "project", text)
    assert [d.code for d in diags if d.severity is not Severity.INFO] == []


def test_gate_metrics_are_what_the_evaluation_runner_reports() -> None:
    from runners.evaluate import summarize

    rows = [{"exact_match": 1.0, "rougeL": 1.0, "latency_s": 0.1}]
    assert tuple(summarize(rows)) == EVALUATION_METRICS


# ----------------------------------------------------------------------------------- properties

COLUMNS = ("question", "answer")  # the columns of rules_base/data.csv
_column = st.sampled_from(COLUMNS)
_text = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"), blacklist_characters="{}"), max_size=8)
_bad_field = st.one_of(
    st.builds(lambda c, a: f"{c}.{a}", _column, st.sampled_from(["__class__", "upper", "x"])),
    st.builds(lambda c, i: f"{c}[{i}]", _column, st.integers(0, 9)),
    st.builds(lambda c, k: f"{c}!{k}", _column, st.sampled_from("rsa")),
    st.builds(lambda c, s: f"{c}:{s}", _column, st.sampled_from([">10", "d", "{answer}", "^100000000"])),
)


def _template(fields: list[str], texts: list[str]) -> str:
    return "".join(t + "{" + f + "}" for t, f in zip(texts, fields, strict=False))


_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(fields=st.lists(_column, min_size=1, max_size=4), texts=st.lists(_text, min_size=4, max_size=4))
def test_any_plain_template_over_the_columns_is_accepted(fields: list[str], texts: list[str], tmp_path_factory) -> None:
    diags = run_validate(tmp_path_factory.mktemp("plain"), prompt(_template(fields, texts)))
    assert [d.code for d in diags if d.severity is Severity.ERROR] == []


@_SETTINGS
@given(fields=st.lists(_column, min_size=0, max_size=3), bad=_bad_field, at=st.integers(0, 3),
       texts=st.lists(_text, min_size=4, max_size=4))
def test_any_template_with_a_non_plain_field_is_rejected(fields: list[str], bad: str, at: int, texts: list[str],
                                                         tmp_path_factory) -> None:
    fields.insert(min(at, len(fields)), bad)
    diags = run_validate(tmp_path_factory.mktemp("bad"), prompt(_template(fields, texts)))
    assert {d.code for d in diags if d.severity is Severity.ERROR} == {"PR-102"}


_out_of_range = st.one_of(st.integers(min_value=2**63, max_value=2**200), st.integers(min_value=-(2**200), max_value=-(2**63) - 1))
# Where an integer may go: (a case.yaml holding it); every spot is a field or a body key that takes one.
_SPOTS = [
    lambda n: job(f"num_epochs: {n}\n"),
    lambda n: job(f"resources: {{num_workers: {n}}}\n"),
    lambda n: job(f"lora_config: {{r: 8, lora_alpha: {n}}}\n"),
    lambda n: job(f"user_config: {{nested: {{deeper: [1, {n}]}}}}\n"),
    lambda n: export(f"resources: {{memory: {n}}}\n", "cml_model"),
    lambda n: config("generation_config", f"{{max_new_tokens: {n}}}"),
]


@_SETTINGS
@given(value=_out_of_range, spot=st.sampled_from(range(len(_SPOTS))))
def test_any_integer_outside_64_bits_is_an_error(value: int, spot: int, tmp_path_factory) -> None:
    """SC-005 in general; SC-002 where the field's own bound (resources, epochs) says it first."""
    diags = run_validate(tmp_path_factory.mktemp("int"), _SPOTS[spot](value))
    hits = [d for d in diags if d.code in ("SC-002", "SC-005")]
    assert hits, [(d.code, d.summary) for d in diags]
    assert all(d.location is not None and d.location.file.endswith("case.yaml") for d in hits)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def _ftctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI with memory and time capped by the harness (a blowup fails the run, not the machine)."""
    return subprocess.run([*FTCTL, *args], cwd=cwd, env=cli_env({"FTCTL_PLAN_SEED": SEED}), capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_memory, check=False)


def test_plan_and_apply_refuse_a_huge_integer_and_write_nothing(tmp_path: Path) -> None:
    """Through the real CLI on a real store: the apply that once wrote 2 of 3 steps and then died
    with OverflowError now refuses before writing anything, with the key named."""
    root = tmp_path / "project"
    shutil.copytree(BASE, root)
    (root / "ftctl.toml").touch()
    (root / "case.yaml").write_text(job(f"user_config: {{batch: {2**64}}}\n"), encoding="utf-8")
    store = tmp_path / "state.db"
    create_studio_store(store)
    before = studio_row_ids(store)
    for run in (_ftctl(root, "plan", ".", "--offline", "--store", str(store)),
                _ftctl(root, "apply", ".", "--auto-approve", "--create-store", "--offline", "--store", str(store))):
        assert run.returncode == 1, show(run)
        assert "SC-005" in run.stdout + run.stderr and "spec.user_config.batch" in run.stdout + run.stderr, show(run)
        assert "Traceback" not in run.stderr and "OverflowError" not in run.stdout + run.stderr, show(run)
    assert studio_row_ids(store) == before
