"""The committed config-body schemas (schemas/config-bodies/, written by runners/config_schemas.py).

Only json + jsonschema: no ML library is imported, so this runs without the train extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "config-bodies"

# The Studio's own default config bodies: every one must validate.
STUDIO_DEFAULTS: dict[str, dict[str, Any]] = {
    "training_arguments": {
        "num_train_epochs": 1,
        "optim": "paged_adamw_32bit",
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 4,
        "warmup_ratio": 0.03,
        "max_grad_norm": 0.3,
        "learning_rate": 0.0002,
        "fp16": True,
        "logging_steps": 1,
        "lr_scheduler_type": "constant",
        "disable_tqdm": True,
        "report_to": "mlflow",
        "ddp_find_unused_parameters": False,
    },
    "bitsandbytes_config": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
        "bnb_4bit_use_double_quant": True,
        "quant_method": "bitsandbytes",
    },
    "lora_config": {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "bias": "none",
        "task_type": "CAUSAL_LM",
    },
    "generation_config": {
        "do_sample": True,
        "temperature": 0.8,
        "max_new_tokens": 60,
        "top_p": 1,
        "top_k": 50,
        "num_beams": 1,
        "repetition_penalty": 1.1,
        "max_length": None,
    },
}

VALID: list[tuple[str, dict[str, Any]]] = [
    ("lora_config", {"target_modules": ["q_proj", "v_proj"]}),
    ("lora_config", {"target_modules": "all-linear"}),
    ("lora_config", {"init_lora_weights": "pissa_niter_16"}),
    ("lora_config", {"init_lora_weights": False}),
    ("training_arguments", {"report_to": ["mlflow", "tensorboard"]}),
    ("training_arguments", {"report_to": None, "num_train_epochs": 2.5}),
    ("bitsandbytes_config", {"bnb_4bit_compute_dtype": None}),
    ("generation_config", {"eos_token_id": [1, 2], "stop_strings": "###"}),
]

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("lora_config", {"lora_alpah": 32}, "additionalProperties"),
    ("lora_config", {"r": "sixteen"}, "type"),
    ("lora_config", {"bias": "some"}, "enum"),
    ("training_arguments", {"learning_rate": "fast"}, "type"),
    ("training_arguments", {"num_train_epoch": 1}, "additionalProperties"),
    ("bitsandbytes_config", {"load_in_4bit": "yes"}, "type"),
    ("generation_config", {"temprature": 0.8}, "additionalProperties"),
    ("generation_config", {"max_new_tokens": 1.5}, "type"),
]


def load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return schema


def errors(name: str, body: dict[str, Any]) -> list[Any]:
    return list(Draft202012Validator(load(name)).iter_errors(body))


@pytest.mark.parametrize("name", sorted(STUDIO_DEFAULTS))
def test_schema_is_a_closed_draft_2020_12_object(name: str) -> None:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["x-generated-from"]) == {"class", "versions"}
    assert list(schema["properties"]) == sorted(schema["properties"])


@pytest.mark.parametrize("name", sorted(STUDIO_DEFAULTS))
def test_studio_default_config_validates(name: str) -> None:
    assert [e.message for e in errors(name, STUDIO_DEFAULTS[name])] == []


@pytest.mark.parametrize(("name", "body"), VALID)
def test_lenient_where_the_library_is(name: str, body: dict[str, Any]) -> None:
    assert [e.message for e in errors(name, body)] == []


@pytest.mark.parametrize(("name", "body", "keyword"), INVALID)
def test_typos_and_wrong_types_fail(name: str, body: dict[str, Any], keyword: str) -> None:
    found = errors(name, body)
    assert found, f"{body} should not validate against {name}"
    assert keyword in {e.validator for e in found} | {c.validator for e in found for c in e.context}


@pytest.mark.parametrize("name", sorted(STUDIO_DEFAULTS))
def test_files_are_written_canonically(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


# Values of every JSON type, including the ones Python confuses (bool is an int, 1.0 an integer to JSON Schema).
PROBE_VALUES: list[Any] = [None, True, False, 0, 1, -3, 1.0, 2.5, "", "linear", "gaussian", "constant", [], [1, 2], ["a"],
                           [1, "a"], {}, {"a": 1}, {"a": "b"}]


@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")))
def test_fast_check_never_passes_what_jsonschema_refuses(name: str) -> None:
    """`ftctl validate` skips jsonschema for values that plainly match a key's type and enum; the
    skip must never let through a value jsonschema would refuse (it only ever says "ask")."""
    from reconciler.rules.configs import _plainly_valid

    properties = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())["properties"]
    skipped = 0
    for key, schema in properties.items():
        for value in PROBE_VALUES:
            if _plainly_valid(value, schema):
                skipped += 1
                assert Draft202012Validator(schema).is_valid(value), (key, schema, value)
    assert skipped, "the fast check should decide the common cases"
