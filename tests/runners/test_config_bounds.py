"""The config-body schemas reject what the pinned libraries reject, and accept what they accept.

For every hand-declared bound in `runners/config_schemas.BOUNDS`, the library call the table names
is made with the value just outside the bound (it must raise) and at the bound (it must not), and the
committed schema must agree on both. The enums the generator found by probing and the one cross-field
rule (CF-106) are checked the same way against the real classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runners.config_schemas import BOUNDS
from tests.runners.helpers import REPO, needs_ml

pytestmark = needs_ml
SCHEMAS = REPO / "schemas" / "config-bodies"


def _sft(tmp: Path, **kw: Any) -> Any:
    import trl

    return trl.SFTConfig(output_dir=str(tmp), use_cpu=True, **kw)


def _loader(**kw: Any) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader([1, 2], **kw)


def _adamw(lr: float) -> Any:
    import torch

    return torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=lr)


def _lora_r(r: int) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    return get_peft_model(model, LoraConfig(r=r, target_modules=["0"]))


def _warper(name: str) -> Callable[[Any], Any]:
    def build(value: Any) -> Any:
        from transformers.generation import logits_process

        return getattr(logits_process, name)(value)

    return build


def _generation(**kw: Any) -> Any:
    from transformers import GenerationConfig

    config = GenerationConfig(**kw)
    config.validate(strict=True)
    return config


def _dropout(p: float) -> Any:
    import torch

    return torch.nn.Dropout(p)


# (body, key) -> (the library call the BOUNDS comment names, a value outside the bound, the bound)
WITNESSES: dict[tuple[str, str], tuple[Callable[[Path, Any], Any], Any, Any]] = {
    ("training_arguments", "warmup_steps"): (lambda tmp, v: _sft(tmp, warmup_steps=v), -3, 0),
    ("training_arguments", "learning_rate"): (lambda tmp, v: _adamw(v), -1.0, 0.0),
    ("training_arguments", "per_device_train_batch_size"): (lambda tmp, v: _loader(batch_size=v), 0, 1),
    ("training_arguments", "per_device_eval_batch_size"): (lambda tmp, v: _loader(batch_size=v), 0, 1),
    ("training_arguments", "dataloader_num_workers"): (lambda tmp, v: _loader(num_workers=v), -1, 0),
    ("lora_config", "r"): (lambda tmp, v: _lora_r(v), 0, 1),
    ("lora_config", "lora_dropout"): (lambda tmp, v: _dropout(v), 1.5, 1.0),
    ("generation_config", "max_new_tokens"): (lambda tmp, v: _generation(max_new_tokens=v), 0, 1),
    ("generation_config", "temperature"): (lambda tmp, v: _warper("TemperatureLogitsWarper")(v), -1.0, 0.5),
    ("generation_config", "top_k"): (lambda tmp, v: _warper("TopKLogitsWarper")(v), -1, 1),
    ("generation_config", "top_p"): (lambda tmp, v: _warper("TopPLogitsWarper")(v), 1.5, 1.0),
    ("generation_config", "repetition_penalty"): (lambda tmp, v: _warper("RepetitionPenaltyLogitsProcessor")(v), 0.0, 0.5),
}


def schema_accepts(body: str, key: str, value: Any) -> bool:
    schema = json.loads((SCHEMAS / f"{body}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema).is_valid({key: value})


def test_every_bound_has_a_witness() -> None:
    assert set(WITNESSES) == {(body, key) for body, keys in BOUNDS.items() for key in keys}


@pytest.mark.parametrize("row", sorted(WITNESSES), ids=lambda row: f"{row[0]}.{row[1]}")
def test_bound_matches_the_library(row: tuple[str, str], tmp_path: Path) -> None:
    call, outside, boundary = WITNESSES[row]
    with pytest.raises(ValueError):
        call(tmp_path, outside)
    call(tmp_path, boundary)
    assert not schema_accepts(*row, outside)
    assert schema_accepts(*row, boundary)


@pytest.mark.parametrize(("body", "key", "bad", "good"), [
    ("training_arguments", "optim", "sgdx", "adamw_torch"),
    ("training_arguments", "lr_scheduler_type", "bogus", "cosine"),
    ("training_arguments", "save_strategy", "sometimes", "no"),
    ("lora_config", "task_type", "BOGUS", "CAUSAL_LM"),
])
def test_enum_matches_the_library(body: str, key: str, bad: str, good: str, tmp_path: Path) -> None:
    from peft import LoraConfig

    build = (lambda **kw: _sft(tmp_path, **kw)) if body == "training_arguments" else LoraConfig
    with pytest.raises(ValueError):
        build(**{key: bad})
    build(**{key: good})
    assert not schema_accepts(body, key, bad)
    assert schema_accepts(body, key, good)


def test_4bit_and_8bit_together_is_refused_by_the_library() -> None:
    """CF-106 states a rule of BitsAndBytesConfig that no per-key schema can."""
    from transformers import BitsAndBytesConfig

    with pytest.raises(ValueError, match="only one"):
        BitsAndBytesConfig(load_in_4bit=True, load_in_8bit=True)
    BitsAndBytesConfig(load_in_4bit=True)
