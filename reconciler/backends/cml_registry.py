"""Gathering `RegistryFacts`: what the Studio reads from the CML Model Registry when it registers a
`type: model_registry` Model or Adapter, and the diagnostics for ids the registry does not know.

The Studio's import (seeds/002, Model Registry): `cml.get_registered_model(id)`, then the first
version's `model_version_metadata.mlflow_metadata` gives the row's `mlflow_experiment_id` and
`mlflow_run_id` beside `cml_registered_model_id`. This module asks the same question, once per
distinct id, through `reconciler.backends.cml_http.CMLClient` (the only code that speaks HTTP to
CML; it retries transient failures).

Outcomes: found -> a `RegisteredModelFact`; 404 -> MD-103 / AD-103 error on the manifest's
`spec.cml_registered_model_id` (the id is also in `RegistryFacts.missing`); found without a version
-> the same error (the Studio's import fails on `model_versions[0]`); any other failure -> ON-002
warning, the id stays unknown and the plan keeps the store's values. Offline, or without the CML API
settings (CDSW_API_URL, CDSW_APIV2_KEY, CDSW_PROJECT_ID), nothing is asked and nothing is said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.backends.cml_http import CMLClient, CMLError
from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.facts import RegisteredModelFact, RegistryFacts
from reconciler.manifests import Manifest, SourceTexts, resolve_positions
from reconciler.models import Adapter, Model
from reconciler.safeio import ReadRoots

SETTINGS = ("CDSW_API_URL", "CDSW_APIV2_KEY", "CDSW_PROJECT_ID")
FIELD = "cml_registered_model_id"
_CODES = {"Model": "MD-103", "Adapter": "AD-103"}
_UNKNOWN_HINT = (
    "The plan keeps the mlflow_experiment_id and mlflow_run_id the store has; plan again when the CML API answers."
)


def registry_id_of(manifest: Manifest) -> str | None:
    """The registered model id of a model_registry Model or Adapter, None for anything else."""
    resource = manifest.resource
    if not isinstance(resource, Model | Adapter) or resource.spec.type != "model_registry":
        return None
    value = (resource.spec.cml_registered_model_id or "").strip()
    return value or None


def gather_registry_facts(
    manifests: Sequence[Manifest], *, environ: Mapping[str, str], offline: bool
) -> tuple[RegistryFacts, list[Diagnostic]]:
    """Ask the registry for each registered model id the manifests use; diagnostics come with
    their positions resolved (the files are re-read only when there is something to say)."""
    targets = [(m, model_id) for m in manifests if (model_id := registry_id_of(m)) is not None]
    if offline or not targets or any(not environ.get(name) for name in SETTINGS):
        return RegistryFacts(), []
    client = CMLClient.from_environ(environ)
    found: dict[str, RegisteredModelFact] = {}
    missing: dict[str, str] = {}
    failed: dict[str, str] = {}
    for model_id in dict.fromkeys(model_id for _, model_id in targets):
        try:
            found[model_id] = _fact(client.get_registered_model(model_id))
        except CMLError as exc:
            (missing if exc.status == 404 else failed)[model_id] = str(exc)
        except (ValueError, TypeError, AttributeError) as exc:  # an answer that is not a registered model
            failed[model_id] = f"CML API get_registered_model answered something unexpected: {exc}"
    diags: list[Diagnostic] = []
    for manifest, model_id in targets:
        code = _CODES[manifest.kind]
        if model_id in missing:
            summary = f"registered model {model_id!r} was not found in the CML Model Registry"
            diags.append(_diag(manifest, code, summary, detail=missing[model_id]))
        elif model_id in failed:
            summary = f"could not read registered model {model_id!r} from the CML Model Registry"
            diags.append(_diag(manifest, "ON-002", summary, detail=failed[model_id], hint=_UNKNOWN_HINT))
        elif not found[model_id].versions:
            summary = (f"registered model {model_id!r} ({found[model_id].name}) has no version: the Studio "
                       "imports the MLflow experiment and run of its first version")
            diags.append(_diag(manifest, code, summary))
    return RegistryFacts(models=found, missing=missing), _positioned(diags, environ)


def _diag(manifest: Manifest, code: str, summary: str, *, detail: str | None = None, hint: str | None = None) -> Diagnostic:
    return make_diag(code, summary, location=manifest.at("spec", FIELD), address=manifest.address, detail=detail, hint=hint)


def _fact(answer: Mapping[str, Any]) -> RegisteredModelFact:
    versions = answer.get("model_versions") or []
    if not isinstance(versions, list):
        raise ValueError("model_versions is not a list")
    first = versions[0] if versions else {}
    mlflow = (first.get("model_version_metadata") or {}).get("mlflow_metadata") or {}
    return RegisteredModelFact(
        name=str(answer.get("name") or ""),
        experiment_id=str(mlflow.get("experiment_id") or ""),
        run_id=str(mlflow.get("run_id") or ""),
        versions=len(versions),
    )


def _positioned(diags: list[Diagnostic], environ: Mapping[str, str]) -> list[Diagnostic]:
    """Line and column for each diagnostic, read from its manifest file (as the loader reads it:
    through the same read roots)."""
    files = sorted({diag.location.file for diag in diags if diag.location is not None})
    sources = SourceTexts(ReadRoots.for_paths(files, environ) if files else None)
    sources.deferred.update(files)
    return sorted(resolve_positions(diags, sources), key=Diagnostic.sort_key)
