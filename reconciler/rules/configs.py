"""Config rules: Config manifests and configs given inline in jobs (CF-001…CF-004, CF-101…CF-107).

Bodies of library-backed types are checked key by key against JSON Schemas generated from the
pinned libraries (`schemas/config-bodies/`), so a typo such as `lora_alpah` is caught before a
job is launched, without importing transformers or peft on the command path.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath
from reconciler.manifests import yamlsafe
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, IdRef
from reconciler.models.config import CONFIG_TYPES, LIBRARY_BACKED, YAML_CONFIG_TYPES
from reconciler.rules.context import RuleContext, unknown_type
from reconciler.secrets import with_placeholders

# Which config type each job/export field takes.
SOURCE_FIELDS: dict[str, dict[str, str]] = {
    "FineTuningJob": {
        "lora_config": "lora_config",
        "bnb_config": "bitsandbytes_config",
        "adapter_bnb_config": "bitsandbytes_config",
        "training_arguments": "training_arguments",
        "axolotl_config": "axolotl",
        "user_config": "custom",
    },
    "EvaluationJob": {
        "generation_config": "generation_config",
        "bnb_config": "bitsandbytes_config",
        "adapter_bnb_config": "bitsandbytes_config",
    },
    "ModelExport": {"generation_config": "generation_config", "bnb_config": "bitsandbytes_config"},
}


def parse_body(config_type: str, body: Any) -> tuple[dict[str, Any] | None, str, str]:
    """The body as a mapping, or (None, code, message) when it is not one."""
    if body is None:
        return None, "CF-103", "config body is missing"
    if isinstance(body, str):
        if config_type in YAML_CONFIG_TYPES:
            docs, problems, error = yamlsafe.load_documents(body)
            if error is not None or problems or len(docs) != 1:
                why = str(getattr(error, "problem", error) or (problems[0].message if problems else "not one document"))
                return None, "CF-003", f"axolotl config is not valid YAML: {why}"
            body = docs[0]
        else:
            try:
                body = json.loads(body)
            except ValueError as exc:
                return None, "CF-002", f"config is not valid JSON: {exc}"
    if not isinstance(body, dict):
        return None, "CF-103", f"config body is a {type(body).__name__}, not a mapping"
    return body, "", ""


def canonical(config_type: str, body: dict[str, Any]) -> str:
    return config_type + ":" + json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def check_configs(ctx: RuleContext) -> Iterator[Diagnostic]:
    seen: dict[str, str] = {}
    for m in ctx.of_kind("Config"):
        assert isinstance(m.resource, Config)
        spec = m.resource.spec
        if spec.type not in CONFIG_TYPES:
            yield unknown_type(m, "CF-001", "config", spec.type)
            continue
        if spec.model is not None:
            yield from ctx.check_ref(m, spec.model, "Model", ("spec", "model"))[1]
        body, diags = checked_body(ctx, m, spec.type, spec.config, ("spec", "config"))
        yield from diags
        if body is not None:
            yield from _duplicate(seen, canonical(spec.type, body), m, ("spec", "config"))


def checked_body(
    ctx: RuleContext, m: Manifest, config_type: str, raw: Any, path: FieldPath
) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    body, code, message = parse_body(config_type, raw)
    if body is None:
        return None, [make_diag(code, message, location=m.at(*path), address=m.address)]
    body_name = LIBRARY_BACKED.get(config_type)
    if body_name is None:
        return body, []  # custom and axolotl bodies: no library class types them
    schema = ctx.body_schemas.get(body_name)
    if schema is None:  # never a silent pass: an install without its schemas says so
        message = f"{config_type} body cannot be checked: ftctl's schema for it ({body_name}.schema.json) is missing"
        return body, [make_diag("CF-107", message, location=m.at(*path), address=m.address)]
    # A secret reference ({from_env: NAME}) stands for a string: checked as one (rules/secrets.py owns secrets).
    return body, [*_library_keys(ctx, m, with_placeholders(body), body_name, schema, path), *_cross_field(m, body_name, body, path)]


def _cross_field(m: Manifest, body_name: str, body: dict[str, Any], path: FieldPath) -> Iterator[Diagnostic]:
    """Library rules between keys, which a per-key schema cannot state (CF-106)."""
    if body_name == "bitsandbytes_config" and body.get("load_in_4bit") is True and body.get("load_in_8bit") is True:
        yield make_diag("CF-106", "load_in_4bit and load_in_8bit are both true", location=m.at(*path, "load_in_8bit"), address=m.address)


def _library_keys(
    ctx: RuleContext, m: Manifest, body: dict[str, Any], body_name: str, schema: dict[str, Any], path: FieldPath
) -> Iterator[Diagnostic]:
    properties: dict[str, Any] = schema.get("properties", {})
    origin = schema.get("x-generated-from", {}).get("class", "the library")
    for key, value in body.items():
        known = properties.get(key)
        if known is not None and not known.get("deprecated") and _plainly_valid(value, known):
            continue  # the common case: nothing to say, and no location to build
        loc = m.at(*path, key)
        if known is None:
            close = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.6)
            hint = f"Did you mean {close[0]!r}?" if close else None
            yield make_diag("CF-101", f"{key!r} is not an argument of {origin}", location=loc, address=m.address, hint=hint)
            continue
        if known.get("deprecated"):
            yield make_diag("CF-105", f"{key!r} is a legacy key: {known.get('description', '')}", location=loc, address=m.address)
        message = "" if _plainly_valid(value, known) else _schema_error(ctx, body_name, key, known, value)
        if message:
            yield make_diag("CF-102", f"{key}: {message}", location=loc, address=m.address)


def _schema_error(ctx: RuleContext, body_name: str, key: str, schema: dict[str, Any], value: Any) -> str:
    """jsonschema's best message for a value of one key, or '' when it is valid."""
    import jsonschema  # deferred: most bodies pass `_plainly_valid` and never load it

    validator = ctx.validators.get((body_name, key))
    if validator is None:
        validator = ctx.validators[(body_name, key)] = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    return "" if error is None else str(error.message)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float), "null": (type(None),),
    "array": (list,), "object": (dict,),
}
_ANNOTATIONS = frozenset({"type", "enum", "default", "description", "deprecated", "title", "examples"})
# Keywords that constrain only values of one JSON type; for other values they do not apply.
_APPLIES_TO = {"items": list, "prefixItems": list, "minItems": list, "maxItems": list, "additionalProperties": dict,
               "pattern": str}


def _plainly_valid(value: Any, schema: dict[str, Any]) -> bool:
    """True when a key's value certainly passes its schema by `type` and `enum` alone: the common
    case, checked without jsonschema (~0.1 s to import). False means "ask jsonschema", not invalid."""
    for keyword in schema.keys() - _ANNOTATIONS:
        if keyword not in _APPLIES_TO or isinstance(value, _APPLIES_TO[keyword]):
            return False
    if "enum" in schema and not any(type(option) is type(value) and option == value for option in schema["enum"]):
        return False
    if "type" not in schema:
        return True
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if isinstance(value, bool):  # a bool is an int to Python, never an integer to JSON Schema
        return "boolean" in types
    return isinstance(value, tuple(k for t in types for k in _JSON_TYPES.get(t, ())))


def _duplicate(seen: dict[str, str], key: str, m: Manifest, path: FieldPath) -> Iterator[Diagnostic]:
    if key in seen:
        yield make_diag(
            "CF-004",
            f"same content as {seen[key]}; the Studio keeps one row for both",
            location=m.at(*path),
            address=m.address,
        )
    else:
        seen[key] = m.address


def check_config_sources(ctx: RuleContext) -> Iterator[Diagnostic]:
    """Configs that jobs and exports name or give inline."""
    for kind, fields in SOURCE_FIELDS.items():
        for m in ctx.of_kind(kind):
            spec = m.resource.spec
            for field_name, config_type in fields.items():
                source = getattr(spec, field_name)
                if source is None:
                    continue
                path: FieldPath = ("spec", field_name)
                if isinstance(source, dict):
                    yield from checked_body(ctx, m, config_type, source, path)[1]
                else:
                    yield from _referenced(ctx, m, source, config_type, path)


def _referenced(ctx: RuleContext, m: Manifest, ref: str | IdRef, config_type: str, path: FieldPath) -> Iterator[Diagnostic]:
    missing = "FT-016" if config_type == "axolotl" else "RF-001"
    target, diags = ctx.check_ref(m, ref, "Config", path, missing)
    yield from diags
    if target is None:
        return
    if target.manifest is not None:
        assert isinstance(target.manifest.resource, Config)
        actual = target.manifest.resource.spec.type
    else:
        actual = target.live.type if target.live is not None else None
    if actual is not None and actual != config_type:
        yield make_diag(
            "CF-104",
            f"{path[-1]}: Config {target.name!r} is a {actual}, not a {config_type}",
            location=m.at(*path),
            address=m.address,
        )
