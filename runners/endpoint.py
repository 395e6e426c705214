"""The CML model endpoint's script: serves a base model with a LoRA adapter (`api_wrapper`).

A `cml_model` export (the CML backend) builds a CML model from this file with function
`api_wrapper` and the Studio's environment: FINE_TUNING_STUDIO_BASE_MODEL_HF_NAME (a Hub id or a
folder), FINE_TUNING_STUDIO_ADAPTER_LOCATION (the adapter folder in the project, may be empty) and
FINE_TUNING_STUDIO_GEN_CONFIG_STRING (generation settings as JSON). The model loads once, on the
first request. A request is `{"prompt": "..."}` (plus optional generation overrides under
`"generation"`); the answer is `{"response": "..."}`, or `{"error": "..."}` for a bad request.
Never imports ftctl.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

BASE_ENV = "FINE_TUNING_STUDIO_BASE_MODEL_HF_NAME"
ADAPTER_ENV = "FINE_TUNING_STUDIO_ADAPTER_LOCATION"
GENERATION_ENV = "FINE_TUNING_STUDIO_GEN_CONFIG_STRING"
TOKEN_ENVS = ("HUGGINGFACE_ACCESS_TOKEN", "HF_TOKEN")
DEFAULT_GENERATION = {"max_new_tokens": 64, "do_sample": False}

_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def _token() -> str | None:
    return next((os.environ[name] for name in TOKEN_ENVS if os.environ.get(name)), None)


def _load() -> tuple[Any, Any, dict[str, Any]]:
    """The model, tokenizer and generation settings, loaded on first use (CML keeps the process)."""
    with _lock:
        if not _loaded:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import jobio

            model, _, tokenizer = jobio.load_model(os.environ[BASE_ENV], os.environ.get(ADAPTER_ENV) or None, _token(), dtype="auto")
            generation = {**DEFAULT_GENERATION, **json.loads(os.environ.get(GENERATION_ENV) or "{}")}
            generation.pop("return_full_text", None)  # a pipeline setting, not generate()'s
            _loaded.update(model=model.eval(), tokenizer=tokenizer, generation=generation)
    return _loaded["model"], _loaded["tokenizer"], _loaded["generation"]


def api_wrapper(args: Any) -> dict[str, Any]:
    """One request: `{"prompt": str, "generation": {...}?}` -> `{"response": str}`."""
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            args = {"prompt": args}
    if not isinstance(args, dict) or not isinstance(args.get("prompt"), str) or not args["prompt"]:
        return {"error": 'send {"prompt": "<text>"}'}
    overrides = args.get("generation") or {}
    if not isinstance(overrides, dict):
        return {"error": '"generation" must be an object of generate() settings'}
    model, tokenizer, generation = _load()
    import torch

    inputs = tokenizer(args["prompt"], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, **{**generation, **overrides}, pad_token_id=tokenizer.pad_token_id)
    completion = output[0][inputs["input_ids"].shape[1]:]
    return {"response": tokenizer.decode(completion, skip_special_tokens=True)}
