"""Gathering `HubFacts`: what the Studio reads from the Hub when it registers a resource.

- A huggingface Dataset: its feature (column) names and its description. The Studio takes them from
  `datasets.load_dataset_builder(name).info`; ftctl never loads `datasets`, and reads the same
  metadata where the builder finds it for a Hub dataset: the `dataset_info` of the repo's card,
  which the Hub serves with the repo's info (`cardData`). The description falls back to the one
  the Hub gives the repo.
- A huggingface Model: its family, `architectures[0]` of the repo's config.json (the Studio:
  `AutoConfig.from_pretrained(name).architectures[0]`), fetched with one GET of the file, and the
  commit that answer came from (the Hub's `X-Repo-Commit` header): the base revision lineage records.

The Hub is asked the way `reconciler.online.hub` asks it (see `reconciler.online.client`): the
given endpoint, the token of the variable a manifest names in `hf_token_env` and no other, a
timeout, each repo once, a few at a time, no retries. Offline, nothing is asked. Any failure
(missing repo, no access, no card features, no config.json, no connection) leaves the repo out of
the facts: the Hub check reports missing repos, and the planner says what it could not learn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.facts import HubFacts, model_family
from reconciler.manifests import Manifest
from reconciler.online.client import (
    TIMEOUT_S,
    ask_each,
    endpoint_of,
    hub_api,
    hub_headers,
    hub_repo_of,
    offline_reason,
)

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a model's config.json is a few KiB; a bigger answer is not read

_Key = tuple[str, str]  # (repo type, repo id)


@dataclass(frozen=True)
class _Answer:
    features: tuple[str, ...] | None = None
    description: str | None = None
    family: str | None = None
    revision: str | None = None


def gather_hub_facts(
    manifests: Sequence[Manifest], *, environ: Mapping[str, str], offline: bool
) -> HubFacts:
    """Features and descriptions of huggingface Datasets, families of huggingface Models."""
    if offline_reason(offline, environ):
        return HubFacts()
    tokens: dict[_Key, str | None] = {}
    for manifest in manifests:
        repo = hub_repo_of(manifest)
        if repo is None:
            continue
        token: str | None = None
        if repo.token_env:
            token = environ.get(repo.token_env) or None
            if token is None:
                continue  # the variable is not set (ON-003): asked with another manifest's token or not at all
        key = (repo.repo_type, repo.repo_id)
        if tokens.get(key) is None:  # the first token named for a repo is used, else none
            tokens[key] = token
    if not tokens:
        return HubFacts()
    endpoint = endpoint_of(environ)
    answers = ask_each(tokens, lambda key: _ask(key, tokens[key], endpoint))
    features: dict[str, tuple[str, ...]] = {}
    descriptions: dict[str, str] = {}
    families: dict[str, str] = {}
    revisions: dict[str, str] = {}
    for (repo_type, repo_id), answer in answers.items():
        if repo_type == "dataset":
            if answer.features is not None:
                features[repo_id] = answer.features
            if answer.description is not None:
                descriptions[repo_id] = answer.description
        else:
            if answer.family is not None:
                families[repo_id] = answer.family
            if answer.revision:
                revisions[repo_id] = answer.revision
    return HubFacts(dataset_features=features, dataset_descriptions=descriptions, model_families=families,
                    model_revisions=revisions)


def _ask(key: _Key, token: str | None, endpoint: str) -> _Answer:
    repo_type, repo_id = key
    try:
        if repo_type == "dataset":
            return _ask_dataset(repo_id, token, endpoint)
        family, revision = _ask_model_family(repo_id, token, endpoint)
        return _Answer(family=family, revision=revision)
    except Exception:  # any failure: nothing learnt about this repo
        return _Answer()


def _ask_dataset(repo_id: str, token: str | None, endpoint: str) -> _Answer:
    info = hub_api(endpoint, token).dataset_info(
        repo_id, timeout=TIMEOUT_S, token=token or False, expand=["cardData", "description"]
    )
    config = _default_config(_as_dict(info.card_data))
    features = _feature_names(config.get("features")) if config is not None else None
    description = config.get("description") if config is not None else None
    if not isinstance(description, str) or not description.strip():
        description = info.description if isinstance(info.description, str) else ""
    return _Answer(features=features, description=description)


def _ask_model_family(repo_id: str, token: str | None, endpoint: str) -> tuple[str | None, str | None]:
    """`architectures[0]` of the repo's config.json and the commit it was served from: one GET with
    a timeout and no retries (the library's `hf_hub_download` retries for a minute when the Hub is
    down, and writes to HF_HOME)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import get_session, hf_raise_for_status

    url = hf_hub_url(repo_id, "config.json", endpoint=endpoint)
    response = get_session().get(url, headers=hub_headers(token), timeout=TIMEOUT_S)
    hf_raise_for_status(response)
    revision = response.headers.get("X-Repo-Commit") or None
    if len(response.content) > MAX_CONFIG_BYTES:
        return None, revision
    return model_family(json.loads(response.content)), revision


def _as_dict(card: Any) -> dict[str, Any]:
    if isinstance(card, dict):
        return card
    to_dict = getattr(card, "to_dict", None)
    data = to_dict() if callable(to_dict) else None
    return data if isinstance(data, dict) else {}


def _default_config(card: dict[str, Any]) -> dict[str, Any] | None:
    """The `dataset_info` of the config `load_dataset_builder(name)` loads without a config name:
    the only one, the one the card's `configs` mark `default`, else the one named "default"; None
    when the card has no `dataset_info`, or several configs and none of them the default (the
    builder then asks for a config name)."""
    infos = card.get("dataset_info")
    if isinstance(infos, dict):
        return infos
    if not isinstance(infos, list):
        return None
    infos = [i for i in infos if isinstance(i, dict)]
    if len(infos) == 1:
        return infos[0]
    configs = card.get("configs")
    marked = [
        c.get("config_name")
        for c in (configs if isinstance(configs, list) else [])
        if isinstance(c, dict) and c.get("default") is True
    ]
    wanted = marked[0] if len(marked) == 1 else "default"
    return next((i for i in infos if i.get("config_name", "default") == wanted), None)


def _feature_names(features: Any) -> tuple[str, ...] | None:
    """Top-level feature names: from the card's list of `{name: ..., dtype|sequence|struct...}`, or
    from a `dataset_infos.json`-style mapping of name -> type. None when there are none."""
    names: list[str] = []
    if isinstance(features, dict):
        names = [str(name) for name in features]
    elif isinstance(features, list):
        for feature in features:
            name = feature.get("name") if isinstance(feature, dict) else None
            if not isinstance(name, str):
                return None
            names.append(name)
    return tuple(names) if names else None
