"""Generate JSON Schemas for the config *bodies* the Studio stores (runs on the job side).

Owns: turning the pinned ML libraries' own declarations into JSON Schemas (draft 2020-12)
that say which keys each config type accepts, and which JSON type each key takes:

    training_arguments.schema.json    trl.SFTConfig (a transformers.TrainingArguments dataclass)
    bitsandbytes_config.schema.json   transformers.BitsAndBytesConfig.__init__ (+ its docstring)
    lora_config.schema.json           peft.LoraConfig dataclass fields (init=True)
    generation_config.schema.json     transformers.GenerationConfig (to_dict() keys + its docstring)

Usage:  .venv/bin/python runners/config_schemas.py OUTDIR

Like every program in runners/, this never imports ``reconciler``; ftctl reads only the JSON
files this writes. The output is deterministic byte for byte for a given set of installed
library versions (sorted keys, no timestamps), so it can be committed and checked for staleness.

Type mapping (annotation -> JSON Schema): int -> integer, float -> number, bool -> boolean,
str -> string, None -> null, Literal / Enum -> enum of values, list / tuple -> array,
dict -> object, ``torch.dtype`` -> string (JSON names a dtype, e.g. "float16"), anything else
(Any, callables, tensors, library classes) -> no constraint ``{}``. A string in a union absorbs
the string-valued Literal / Enum members next to it (``Union[str, SchedulerType]`` -> string).
Where the library types a key ``str | SomeEnum`` and yet converts it to the enum (so any other string
fails), the enum wins: found by building the class with a probe value (``enforce_enums``). Numeric
bounds the libraries check in code, not in hints, come from the ``BOUNDS`` table.
Classes that declare no annotations (BitsAndBytesConfig, GenerationConfig) are typed from the
``Args:`` section of their docstrings, which use the same notation.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import json
import os
import re
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DESCRIPTION_LIMIT = 300
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

JSONSchema = dict[str, Any]
NONE_TYPE = type(None)
_PLACEHOLDER = re.compile(r"\[[^\]]*\]")


@dataclasses.dataclass(frozen=True)
class Key:
    """One accepted config key, before it becomes a JSON Schema property."""

    name: str
    annotation: Any  # a typing object; typing.Any when nothing is known
    default: Any = dataclasses.MISSING
    description: str | None = None
    choices: tuple[Any, ...] | None = None  # values the library declares it accepts


# Keys the library does not declare but that ftctl must accept. Each one is a deliberate,
# documented exception; see the description of each for why.
EXTRA_KEYS: dict[str, tuple[tuple[str, JSONSchema], ...]] = {
    "bitsandbytes_config": (
        (
            "quant_method",
            {
                "type": "string",
                "description": (
                    "Written by BitsAndBytesConfig.to_dict() (value 'bitsandbytes') and present in the "
                    "Studio's default config. BitsAndBytesConfig.__init__ takes it through **kwargs and "
                    "ignores it."
                ),
            },
        ),
    ),
    "training_arguments": (
        (
            "warmup_ratio",
            {
                "type": "number",
                "deprecated": True,
                "description": (
                    "Legacy key (transformers < 5), present in the Studio's default config. The pinned "
                    "TrainingArguments no longer accepts it (TypeError); the training runner must move it "
                    "to warmup_steps, where a value below 1 is read as a ratio of the total steps."
                ),
            },
        ),
    ),
}


# Numeric bounds a library enforces in code rather than in its type hints, most of them only once a
# job runs (a DataLoader, an optimizer, a logits warper is built): ftctl checks them before launch.
# Each row names the library call that rejects a value outside it; tests/runners/test_config_bounds.py
# calls each one with the values just outside and at the bound.
BOUNDS: dict[str, dict[str, JSONSchema]] = {
    "training_arguments": {
        "warmup_steps": {"minimum": 0},  # TrainingArguments.__post_init__: "Expected value warmup_steps >= 0"
        "learning_rate": {"minimum": 0},  # torch.optim.AdamW: "Invalid learning rate"
        "per_device_train_batch_size": {"minimum": 1},  # torch DataLoader: "batch_size should be a positive integer"
        "per_device_eval_batch_size": {"minimum": 1},  # (the same DataLoader check)
        "dataloader_num_workers": {"minimum": 0},  # torch DataLoader: "num_workers option should be non-negative"
    },
    "lora_config": {
        "r": {"minimum": 1},  # peft LoraLayer.update_layer: "`r` should be a positive integer value"
        "lora_dropout": {"minimum": 0, "maximum": 1},  # torch.nn.Dropout: "dropout probability has to be between 0 and 1"
    },
    "generation_config": {
        "max_new_tokens": {"minimum": 1},  # GenerationConfig.validate: "`max_new_tokens` must be greater than 0"
        "temperature": {"minimum": 0},  # TemperatureLogitsWarper: "has to be a strictly positive float" (0: greedy, no warper)
        "top_k": {"minimum": 0},  # TopKLogitsWarper: "has to be a strictly positive integer" (0: no warper)
        "top_p": {"minimum": 0, "maximum": 1},  # TopPLogitsWarper: "`top_p` has to be a float > 0 and < 1"
        "repetition_penalty": {"exclusiveMinimum": 0},  # RepetitionPenaltyLogitsProcessor: "strictly positive float"
    },
}

# A string no library accepts as a choice: a key whose enum the library enforces rejects it.
PROBE_VALUE = "__ftctl_probe_not_a_choice__"


# ---------------------------------------------------------------------------------------------
# Annotation -> JSON Schema
# ---------------------------------------------------------------------------------------------


def annotation_schema(annotation: Any) -> JSONSchema:
    """The JSON Schema for values of a Python type annotation ({} when it cannot be expressed)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return union_schema(typing.get_args(annotation))
    if origin is typing.Literal:
        return literal_schema(typing.get_args(annotation))
    if origin is not None:
        return generic_schema(origin, typing.get_args(annotation))
    return class_schema(annotation)


def class_schema(cls: Any) -> JSONSchema:
    scalars: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if cls is NONE_TYPE or cls is None:
        return {"type": "null"}
    if cls in scalars:
        return {"type": scalars[cls]}
    if cls in (list, tuple, set, frozenset):
        return {"type": "array"}
    if cls is dict:
        return {"type": "object"}
    if inspect.isclass(cls) and issubclass(cls, enum.Enum):
        return literal_schema(tuple(member.value for member in cls))
    if is_torch_dtype(cls):
        return {"type": "string"}
    return {}


def is_torch_dtype(cls: Any) -> bool:
    return getattr(cls, "__module__", None) == "torch" and getattr(cls, "__name__", None) == "dtype"


def generic_schema(origin: Any, args: tuple[Any, ...]) -> JSONSchema:
    """list[X], tuple[X, ...], tuple[A, B], dict[K, V] and their collections.abc cousins."""
    name = getattr(origin, "__name__", "")
    if origin in (list, set, frozenset) or name in ("Sequence", "Iterable", "Set"):
        return array_schema(args[0] if args else Any)
    if origin is tuple:
        return tuple_schema(args)
    if origin is dict or name in ("Mapping", "MutableMapping"):
        return dict_schema(args)
    if origin is typing.Annotated or name == "Annotated":
        return annotation_schema(args[0])
    return {}


def array_schema(item: Any) -> JSONSchema:
    items = annotation_schema(item)
    return {"type": "array", "items": items} if items else {"type": "array"}


def tuple_schema(args: tuple[Any, ...]) -> JSONSchema:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        return array_schema(args[0] if args else Any)
    return {
        "type": "array",
        "prefixItems": [annotation_schema(arg) for arg in args],
        "minItems": len(args),
        "maxItems": len(args),
    }


def dict_schema(args: tuple[Any, ...]) -> JSONSchema:
    if len(args) == 2 and args[0] is str:
        values = annotation_schema(args[1])
        if values:
            return {"type": "object", "additionalProperties": values}
    return {"type": "object"}


def literal_schema(values: tuple[Any, ...]) -> JSONSchema:
    """An enum; a string value with a ``[placeholder]`` in it becomes a pattern instead."""
    plain = [json_value(value) for value in values if not is_placeholder(value)]
    patterns = [placeholder_pattern(value) for value in values if is_placeholder(value)]
    alternatives: list[JSONSchema] = [{"enum": plain}] if plain else []
    alternatives += [{"type": "string", "pattern": pattern} for pattern in patterns]
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def is_placeholder(value: Any) -> bool:
    """'pissa_niter_[number of iters]' in peft's Literal stands for 'pissa_niter_16' etc."""
    return isinstance(value, str) and _PLACEHOLDER.search(value) is not None


def placeholder_pattern(value: str) -> str:
    return "^" + ".+".join(re.escape(part) for part in _PLACEHOLDER.split(value)) + "$"


def union_schema(members: tuple[Any, ...]) -> JSONSchema:
    nullable = any(member in (None, NONE_TYPE) for member in members)
    schemas = [annotation_schema(m) for m in members if m not in (None, NONE_TYPE)]
    if any(schema == {} for schema in schemas):
        return {}
    schema = merge_alternatives(unique(flatten_any_of(schemas)))
    return with_null(schema) if nullable else schema


def flatten_any_of(schemas: list[JSONSchema]) -> list[JSONSchema]:
    flat: list[JSONSchema] = []
    for schema in schemas:
        flat.extend(schema["anyOf"] if set(schema) == {"anyOf"} else [schema])
    return flat


def unique(schemas: list[JSONSchema]) -> list[JSONSchema]:
    """Drop repeated alternatives (str | torch.dtype is string twice), keeping the first."""
    seen: dict[str, JSONSchema] = {}
    for schema in schemas:
        seen.setdefault(json.dumps(schema, sort_keys=True), schema)
    return list(seen.values())


def merge_alternatives(alternatives: list[JSONSchema]) -> JSONSchema:
    """Fold union members into one schema: a type list where possible, anyOf otherwise."""
    typed = [a for a in alternatives if "enum" not in a and "pattern" not in a]
    plain_types = {t for a in typed if set(a) == {"type"} for t in type_list(a)}
    values = [v for a in alternatives if "enum" in a for v in a["enum"]]
    enums = [{"enum": values}] if values and not absorbed(values, plain_types) else []
    patterns = [a for a in alternatives if "pattern" in a and "string" not in plain_types]
    parts = merge_typed(typed) + enums + patterns
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"anyOf": parts}


def absorbed(values: list[Any], plain_types: set[str]) -> bool:
    """Whether every enum value is already allowed by a plain type beside it in the union."""
    allowed = plain_types | ({"integer"} if "number" in plain_types else set())
    return all(json_type(value) in allowed for value in values)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def merge_typed(typed: list[JSONSchema]) -> list[JSONSchema]:
    """One schema with a type list when the members' keywords cannot clash, else the members."""
    seen: list[str] = [t for schema in typed for t in type_list(schema)]
    keywords = [k for schema in typed for k in schema if k != "type"]
    if len(seen) != len(set(seen)) or len(keywords) != len(set(keywords)):
        return typed
    merged: JSONSchema = {}
    for schema in typed:
        merged.update({k: v for k, v in schema.items() if k != "type"})
    if seen:
        merged["type"] = normalise_types(seen)
    return [merged] if merged else []


def type_list(schema: JSONSchema) -> list[str]:
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def normalise_types(names: list[str]) -> str | list[str]:
    unique = set(names)
    if "number" in unique:
        unique.discard("integer")  # every JSON integer is a number
    ordered = sorted(unique)
    return ordered[0] if len(ordered) == 1 else ordered


def with_null(schema: JSONSchema) -> JSONSchema:
    """The same schema, also accepting null."""
    if not schema or None in schema.get("enum", ()) or "null" in type_list(schema):
        return schema
    if "anyOf" in schema:
        if any(with_null(alt) == alt for alt in schema["anyOf"]):
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    result = dict(schema)
    if "enum" in result:
        result["enum"] = [*result["enum"], None]
    if "type" in result:
        result["type"] = normalise_types([*type_list(result), "null"])
    return result


# ---------------------------------------------------------------------------------------------
# Docstring types: "max_length (`int`, *optional*):" -> int
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z_][\w.]*|[\[\](),|]")
_ARG_HEADER = re.compile(r"^\s+(?P<name>\w+)\s*:?\s*\((?P<spec>.+)\)\s*:?\s*$")
_TYPING_NAMES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str, "None": NONE_TYPE,
    "list": list, "List": list, "tuple": tuple, "Tuple": tuple, "dict": dict, "Dict": dict,
    "set": set, "Any": Any, "Union": typing.Union, "Optional": typing.Optional,
}  # fmt: skip


def parse_doc_type(spec: str, namespace: dict[str, Any]) -> Any:
    """A docstring type, e.g. "`Union[int, list[int]]`, *optional*" -> Union[int, list[int]]."""
    first = split_top_level(spec.replace("`", ""), ",")[0].strip()
    tokens = ["|" if token == "or" else token for token in _TOKEN.findall(first)]
    try:
        annotation, rest = parse_union(tokens, namespace)
    except (IndexError, TypeError, ValueError):
        return Any
    return annotation if not rest else Any


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on separator where it is outside any brackets or parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def parse_union(tokens: list[str], namespace: dict[str, Any]) -> tuple[Any, list[str]]:
    members, rest = [], tokens
    while True:
        member, rest = parse_term(rest, namespace)
        members.append(member)
        if not rest or rest[0] != "|":
            break
        rest = rest[1:]
    return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), rest  # noqa: UP007


def parse_term(tokens: list[str], namespace: dict[str, Any]) -> tuple[Any, list[str]]:
    base, rest = resolve_name(tokens[0], namespace), tokens[1:]
    if not rest or rest[0] not in "[(":
        return base, rest
    closing = "]" if rest[0] == "[" else ")"
    args, rest = [], rest[1:]
    while rest[0] != closing:
        arg, rest = parse_union(rest, namespace)
        args.append(arg)
        rest = rest[1:] if rest[0] == "," else rest
    return subscript(base, tuple(args)), rest[1:]


def resolve_name(name: str, namespace: dict[str, Any]) -> Any:
    if name in _TYPING_NAMES:
        return _TYPING_NAMES[name]
    value: Any = namespace
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return Any
    return value


def subscript(base: Any, args: tuple[Any, ...]) -> Any:
    if base is typing.Union:
        return typing.Union[args]  # noqa: UP007
    if base is typing.Optional:
        return typing.Optional[args[0]]  # noqa: UP045
    if base in (list, set, dict, tuple):
        return base[args]
    return Any


def docstring_args(cls: type, namespace: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """name -> (annotation, description) for each entry of the class docstring's Args section."""
    found: dict[str, tuple[Any, str]] = {}
    for name, spec, lines in iter_doc_args(inspect.getdoc(cls) or ""):
        found.setdefault(name, (parse_doc_type(spec, namespace), " ".join(lines)))
    return found


def iter_doc_args(doc: str) -> Iterator[tuple[str, str, list[str]]]:
    """(name, type spec, description lines) per entry; entries share the first entry's indent."""
    lines = doc.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Args:"), len(lines))
    indent: int | None = None
    current: tuple[str, str, list[str]] | None = None
    for line in lines[start:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        header = _ARG_HEADER.match(line)
        if header and indent in (None, depth):
            if current:
                yield current
            indent, current = depth, (header["name"], header["spec"], [])
        elif current and depth > (indent or 0):
            current[2].append(line.strip())
        elif current:  # back at the entries' indent: a section marker such as "> Parameters ..."
            yield current
            current = None
    if current:
        yield current


# ---------------------------------------------------------------------------------------------
# Collecting keys from each library class
# ---------------------------------------------------------------------------------------------


def dataclass_keys(cls: type) -> list[Key]:
    """Every init=True field of a dataclass, with its help text and declared choices."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an unresolvable forward reference: fall back field by field
        hints = {}
    keys = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        annotation = hints.get(field.name, field.type)
        choices = field.metadata.get("choices")
        keys.append(
            Key(
                name=field.name,
                annotation=Any if isinstance(annotation, str) else annotation,
                default=field_default(field),
                description=field.metadata.get("help"),
                choices=tuple(choices) if choices else None,
            )
        )
    return keys


def field_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        try:
            return field.default_factory()
        except Exception:
            return dataclasses.MISSING
    return dataclasses.MISSING


def signature_keys(cls: type, documented: dict[str, tuple[Any, str]]) -> list[Key]:
    """Named parameters of cls.__init__, typed by annotation or else by the docstring."""
    keys = []
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        doc_type, doc_text = documented.get(name, (Any, None))
        annotation = doc_type if param.annotation is param.empty else param.annotation
        default = dataclasses.MISSING if param.default is param.empty else param.default
        keys.append(Key(name, annotation, default, doc_text))
    return keys


def generation_keys(cls: type, documented: dict[str, tuple[Any, str]]) -> list[Key]:
    """GenerationConfig sets its attributes from **kwargs: its to_dict() keys are the list."""
    instance = cls()
    names = set(instance.to_dict()) | {key.name for key in signature_keys(cls, documented)}
    keys = []
    for name in sorted(names):
        doc_type, doc_text = documented.get(name, (Any, None))
        keys.append(Key(name, doc_type, vars(instance).get(name, dataclasses.MISSING), doc_text))
    return keys


def union_enum(annotation: Any) -> type[enum.Enum] | None:
    """The one Enum in a union such as ``Union[str, OptimizerNames]`` (where str absorbs it), if any."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    found = [a for a in typing.get_args(annotation) if inspect.isclass(a) and issubclass(a, enum.Enum)]
    return found[0] if len(found) == 1 else None


def enforce_enums(keys: list[Key], construct: Callable[..., Any]) -> list[Key]:
    """Keys typed ``str | SomeEnum`` whose class converts the string to the enum (and so rejects any
    other string, e.g. TrainingArguments' optim -> OptimizerNames) take the enum's values. Decided by
    asking the class itself: build it with a value no enum holds and see whether it refuses."""
    construct()  # the class builds with its defaults, so a refusal below is about the probed key
    out = []
    for key in keys:
        members = union_enum(key.annotation)
        if members is not None and refuses(construct, key.name):
            nullable = NONE_TYPE in typing.get_args(key.annotation)
            key = dataclasses.replace(key, annotation=typing.Optional[members] if nullable else members)  # noqa: UP045
        out.append(key)
    return out


def refuses(construct: Callable[..., Any], name: str) -> bool:
    try:
        construct(**{name: PROBE_VALUE})
    except (ValueError, KeyError) as exc:
        return PROBE_VALUE in str(exc)
    return False


# ---------------------------------------------------------------------------------------------
# Keys -> schema document
# ---------------------------------------------------------------------------------------------


def property_schema(key: Key, bounds: JSONSchema) -> JSONSchema:
    schema = {**annotation_schema(key.annotation), **bounds}
    if key.choices and "enum" not in schema and set(type_list(schema)) in ({"string"}, {"null", "string"}):
        schema["enum"] = [*key.choices, *([None] if "null" in type_list(schema) else [])]
    if key.default is None:
        schema = with_null(schema)
    default = json_default(key.default)
    if default is not dataclasses.MISSING:
        schema["default"] = default
    if key.description:
        schema["description"] = truncate(" ".join(key.description.split()))
    return schema


def json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def json_default(value: Any) -> Any:
    """The default as plain JSON, or MISSING when it has no JSON form."""
    if value is dataclasses.MISSING:
        return value
    value = json_value(value)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return dataclasses.MISSING


def truncate(text: str) -> str:
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3].rstrip() + "..."


def build_schema(
    title: str, cls_name: str, versions: dict[str, str], keys: list[Key], extras_for: str
) -> JSONSchema:
    bounds = BOUNDS.get(extras_for, {})
    unknown = sorted(set(bounds) - {key.name for key in keys})
    if unknown:  # a library upgrade renamed a key: the table must follow, not silently lose a bound
        raise ValueError(f"BOUNDS[{extras_for!r}] names keys {cls_name} does not have: {unknown}")
    properties = {key.name: property_schema(key, bounds.get(key.name, {})) for key in keys}
    for name, extra in EXTRA_KEYS.get(extras_for, ()):
        properties.setdefault(name, extra)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": dict(sorted(properties.items())),
        "x-generated-from": {"class": cls_name, "versions": dict(sorted(versions.items()))},
    }


# ---------------------------------------------------------------------------------------------
# The four documents
# ---------------------------------------------------------------------------------------------


def training_arguments_schema() -> JSONSchema:
    import transformers
    import trl

    versions = {"trl": trl.__version__, "transformers": transformers.__version__}
    with tempfile.TemporaryDirectory() as scratch:  # output_dir is required; use_cpu: no GPU checks
        keys = enforce_enums(dataclass_keys(trl.SFTConfig), functools.partial(trl.SFTConfig, output_dir=scratch, use_cpu=True))
    return build_schema(
        "Training arguments (trl.SFTConfig)", "trl.SFTConfig", versions, keys, "training_arguments"
    )


def bitsandbytes_config_schema() -> JSONSchema:
    import transformers
    from transformers.utils import quantization_config

    cls = transformers.BitsAndBytesConfig
    documented = docstring_args(cls, vars(quantization_config))
    keys = signature_keys(cls, documented)
    return build_schema(
        "bitsandbytes quantization config (transformers.BitsAndBytesConfig)",
        "transformers.BitsAndBytesConfig",
        {"transformers": transformers.__version__},
        keys,
        "bitsandbytes_config",
    )


def lora_config_schema() -> JSONSchema:
    import peft

    return build_schema(
        "LoRA config (peft.LoraConfig)",
        "peft.LoraConfig",
        {"peft": peft.__version__},
        enforce_enums(dataclass_keys(peft.LoraConfig), peft.LoraConfig),
        "lora_config",
    )


def generation_config_schema() -> JSONSchema:
    import transformers
    from transformers.generation import configuration_utils

    cls = transformers.GenerationConfig
    documented = docstring_args(cls, vars(configuration_utils))
    return build_schema(
        "Generation config (transformers.GenerationConfig)",
        "transformers.GenerationConfig",
        {"transformers": transformers.__version__},
        generation_keys(cls, documented),
        "generation_config",
    )


SCHEMAS: dict[str, Callable[[], JSONSchema]] = {
    "training_arguments.schema.json": training_arguments_schema,
    "bitsandbytes_config.schema.json": bitsandbytes_config_schema,
    "lora_config.schema.json": lora_config_schema,
    "generation_config.schema.json": generation_config_schema,
}


def render(schema: JSONSchema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def check_schema(schema: JSONSchema) -> None:
    """Fail loudly if a generated document is not a valid draft 2020-12 schema."""
    try:
        from jsonschema import Draft202012Validator
    except ImportError:  # jsonschema is a dev dependency; the job image may lack it
        return
    Draft202012Validator.check_schema(schema)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: config_schemas.py OUTDIR", file=sys.stderr)
        return 2
    os.environ.update(OFFLINE_ENV)  # before any ML library is imported
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    for filename, make in SCHEMAS.items():
        schema = make()
        check_schema(schema)
        path = outdir / filename
        path.write_text(render(schema), encoding="utf-8")
        print(f"wrote {path} ({len(schema['properties'])} properties)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
