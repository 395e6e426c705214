"""What the online modules share: which Hub repo a manifest names, whether and where to ask the Hub,
and how to ask it.

`huggingface_hub` is imported only inside the functions that call it, so the CLI starts fast.
Everything the client would otherwise take from the process is passed explicitly: the endpoint
(`HF_ENDPOINT` from the `environ` given), the token (the variable a manifest names in
`hf_token_env`, else `False`: a token cached on the machine is never sent), a timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from reconciler import __version__
from reconciler.manifests import Manifest
from reconciler.models import Dataset, Model

if TYPE_CHECKING:
    from huggingface_hub import HfApi

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 10.0
MAX_WORKERS = 8

# repo type -> the spec field naming the repo
REPO_FIELDS = {"dataset": "huggingface_name", "model": "huggingface_model_name"}
_TRUE = ("1", "true", "yes", "on")

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class HubRepo:
    """A Hub repo a manifest names, with the variable its token is to be read from."""

    repo_type: str  # "dataset" | "model"
    repo_id: str
    token_env: str | None

    @property
    def field(self) -> str:
        return REPO_FIELDS[self.repo_type]

    @property
    def what(self) -> str:
        return f"Hugging Face {self.repo_type} {self.repo_id!r}"


def hub_repo_of(manifest: Manifest) -> HubRepo | None:
    """The Hub repo of a huggingface Dataset or Model, None for anything else."""
    resource = manifest.resource
    if isinstance(resource, Dataset):
        repo_type, repo_id = "dataset", resource.spec.huggingface_name
    elif isinstance(resource, Model):
        repo_type, repo_id = "model", resource.spec.huggingface_model_name
    else:
        return None
    if resource.spec.type != "huggingface" or not repo_id or not repo_id.strip():
        return None
    token_env = (resource.spec.hf_token_env or "").strip() or None
    return HubRepo(repo_type, repo_id.strip(), token_env)


def offline_reason(offline: bool, environ: Mapping[str, str]) -> str | None:
    """Why the Hub is not to be asked at all, or None when it may be."""
    if offline:
        return "running offline"
    if environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    return None


def endpoint_of(environ: Mapping[str, str]) -> str:
    return (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_api(endpoint: str, token: str | None) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token or False, library_name="ftctl", library_version=__version__)


def hub_headers(token: str | None) -> dict[str, str]:
    """The headers huggingface_hub sends, with this token or none (never the machine's)."""
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(token=token or False, library_name="ftctl", library_version=__version__)


def ask_each(keys: Iterable[K], ask: Callable[[K], V]) -> dict[K, V]:
    """`ask(key)` for each key, a few at a time; `ask` must not raise."""
    keys = list(keys)
    if not keys:
        return {}
    from huggingface_hub import constants

    # With telemetry on, huggingface_hub 2.x builds its User-Agent by fetching an "agent harness"
    # registry from the endpoint it read at import (the real Hub, whatever HF_ENDPOINT we were
    # given) and caching it under HF_HOME. ftctl talks only to the endpoint it was given.
    constants.HF_HUB_DISABLE_TELEMETRY = True
    workers = min(MAX_WORKERS, len(keys))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftctl-hub") as pool:
        futures = {key: pool.submit(ask, key) for key in keys}
        return {key: future.result() for key, future in futures.items()}
