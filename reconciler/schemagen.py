"""Generating `schemas/`: JSON Schemas for manifests and the job contract (from the pydantic models) and for config bodies
(from the pinned ML libraries, by running `runners/config_schemas.py` in a subprocess, so ftctl
itself never imports them). `check` reports files that are stale.

The files reference each other by relative paths and carry no `$id`: an editor's language server
resolves them beside the manifest schema, offline (an `$id` URL sends it to the web for every body).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from reconciler.contract import contract_schemas
from reconciler.models import MODELS
from reconciler.models.config import LIBRARY_BACKED
from reconciler.rules.configs import SOURCE_FIELDS

MANIFEST_SCHEMA = "manifest.schema.json"
BODIES = "config-bodies"
RUNNER = Path(__file__).resolve().parent.parent / "runners" / "config_schemas.py"


def checkout_folder() -> Path | None:
    """The checkout's schemas/, which `ftctl schema` regenerates; None for an installed ftctl,
    whose package data is written only by building a wheel (never into site-packages)."""
    root = Path(__file__).resolve().parent.parent
    return root / "schemas" if (root / "pyproject.toml").is_file() and (root / "schemas").is_dir() else None


def manifest_schema() -> dict[str, Any]:
    """One schema for any manifest document, discriminated by kind, with typed config bodies."""
    union = Annotated[Union[tuple(MODELS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    schema = TypeAdapter(union).json_schema()  # type: ignore[arg-type]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ftctl manifest (apiVersion ftctl/v1)"
    config_spec = schema["$defs"]["ConfigSpec"]
    config_spec["allOf"] = [
        {
            "if": {"properties": {"type": {"const": config_type}}, "required": ["type"]},
            "then": {"properties": {"config": {"$ref": f"{BODIES}/{body}.schema.json"}}},
        }
        for config_type, body in sorted(LIBRARY_BACKED.items())
    ]
    _type_inline_bodies(schema["$defs"])
    return schema


def _type_inline_bodies(defs: dict[str, Any]) -> None:
    """A body given inline in a job or export (`lora_config: {r: 16}`) gets its library's schema."""
    for kind, fields in SOURCE_FIELDS.items():
        properties = defs[f"{kind}Spec"]["properties"]
        for field, config_type in fields.items():
            if field in properties and config_type in LIBRARY_BACKED:
                body_ref = {"$ref": f"{BODIES}/{LIBRARY_BACKED[config_type]}.schema.json"}
                properties[field]["anyOf"] = [body_ref if _is_mapping(a) else a for a in properties[field]["anyOf"]]


def _is_mapping(alternative: dict[str, Any]) -> bool:
    return alternative.get("type") == "object" and "$ref" not in alternative


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(out: Path, *, with_libraries: bool) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_SCHEMA).write_text(dump(manifest_schema()), encoding="utf-8")
    written = [str(out / MANIFEST_SCHEMA)]
    for name, schema in contract_schemas().items():
        (out / name).write_text(dump(schema), encoding="utf-8")
        written.append(str(out / name))
    if with_libraries:
        subprocess.run([sys.executable, str(RUNNER), str(out / BODIES)], check=True)
        written += sorted(str(p) for p in (out / BODIES).glob("*.schema.json"))
    return written


def pinned_versions() -> dict[str, str]:
    """Versions the [train] extra pins, e.g. {'transformers': '5.23.0', ...}."""
    out = {}
    for requirement in metadata.requires("ftctl") or []:
        spec, _, marker = requirement.partition(";")
        if "==" in spec and "train" in marker:
            name, version = spec.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def libraries_installed() -> bool:
    pins = pinned_versions()
    try:
        # a local build tag (torch's "+cpu") is the same release
        return all(metadata.version(name).split("+")[0] == version for name, version in pins.items())
    except metadata.PackageNotFoundError:
        return False


def check(folder: Path) -> list[str]:
    """Why each stale file is stale; empty when schemas/ is up to date."""
    problems = []
    manifest = folder / MANIFEST_SCHEMA
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != dump(manifest_schema()):
        problems.append(f"{manifest}: differs from the manifest models (run `make schemas`)")
    for name, schema in contract_schemas().items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != dump(schema):
            problems.append(f"{path}: differs from the job contract (reconciler/contract.py; run `ftctl schema`)")
    problems += _check_bodies(folder / BODIES)
    return problems


def _check_bodies(folder: Path) -> list[str]:
    pins = pinned_versions()
    problems = []
    for body in sorted(set(LIBRARY_BACKED.values())):
        path = folder / f"{body}.schema.json"
        if not path.is_file():
            problems.append(f"{path}: missing (run `make schemas`)")
            continue
        versions = json.loads(path.read_text(encoding="utf-8")).get("x-generated-from", {}).get("versions", {})
        for name, version in versions.items():
            key = name.lower().replace("_", "-")
            if key in pins and pins[key] != version:
                problems.append(f"{path}: generated from {name} {version}, pinned {pins[key]} (run `make schemas`)")
    if not problems and libraries_installed():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, str(RUNNER), tmp], check=True, capture_output=True)
            for fresh in sorted(Path(tmp).glob("*.schema.json")):
                committed = folder / fresh.name
                if not committed.is_file() or committed.read_bytes() != fresh.read_bytes():
                    problems.append(f"{committed}: differs from the installed libraries (run `make schemas`)")
    return problems
