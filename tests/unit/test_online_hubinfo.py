"""reconciler.online.hubinfo: dataset features and model families from a fake Hub over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.facts import HubFacts
from reconciler.manifests import LoadResult
from reconciler.online import gather_hub_facts

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so `tests.fakes` imports under plain `pytest` too
    sys.path.insert(0, str(REPO))

from tests.fakes.hub_server import FakeHub  # noqa: E402
from tests.unit.hub_cases import SECRET, dataset, load, model  # noqa: E402

pytestmark = pytest.mark.usefixtures("hub_process_env")  # the fixtures come from tests/unit/hub_cases.py


def gather(result: LoadResult, hub: FakeHub, offline: bool = False, **environ: str) -> HubFacts:
    return gather_hub_facts(result.manifests, environ={"HF_ENDPOINT": hub.url, **environ}, offline=offline)


def card(features: Any, **extra: Any) -> dict[str, Any]:
    return {"license": "mit", "dataset_info": {"features": features, **extra}}


def test_dataset_features_and_description_come_from_its_card(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/tickets")  # the default card: instruction, response
    hub.add_dataset(
        "org/described",
        card_data=card(
            [{"name": "text", "dtype": "string"}, {"name": "label", "class_label": {"names": {"0": "a"}}}],
            description="Support tickets, labelled.",
        ),
    )
    facts = gather(load(tmp_path, dataset("t", "org/tickets"), dataset("d", "org/described")), hub)
    assert facts.dataset_features == {"org/tickets": ("instruction", "response"), "org/described": ("text", "label")}
    assert facts.dataset_descriptions == {
        "org/tickets": "The org/tickets dataset.",  # no description in the card: the Hub's
        "org/described": "Support tickets, labelled.",
    }
    assert facts.model_families == {}
    assert sorted(hub.requests) == [
        ("GET", "/api/datasets/org/described", False),
        ("GET", "/api/datasets/org/tickets", False),
    ]


def test_features_of_the_default_config_of_a_multi_config_dataset(tmp_path: Path, hub: FakeHub) -> None:
    configs = [
        {"config_name": "small", "features": [{"name": "q", "dtype": "string"}]},
        {"config_name": "full", "features": [{"name": "question", "dtype": "string"}, {"name": "answer", "dtype": "string"}]},
    ]
    hub.add_dataset(
        "org/marked",
        card_data={"dataset_info": configs, "configs": [{"config_name": "small"}, {"config_name": "full", "default": True}]},
    )
    hub.add_dataset("org/named", card_data={"dataset_info": [*configs, {"config_name": "default", "features": {"x": {"dtype": "int64"}}}]})
    hub.add_dataset("org/ambiguous", card_data={"dataset_info": configs}, description="")
    hub.add_dataset("org/no-info", card_data={"license": "mit"})
    result = load(
        tmp_path,
        dataset("a", "org/marked"),
        dataset("b", "org/named"),
        dataset("c", "org/ambiguous"),
        dataset("d", "org/no-info"),
    )
    facts = gather(result, hub)
    # the builder needs a config name when several have none marked default: the features are unknown
    assert facts.dataset_features == {"org/marked": ("question", "answer"), "org/named": ("x",)}
    assert facts.dataset_descriptions["org/ambiguous"] == ""
    assert set(facts.dataset_descriptions) == {"org/marked", "org/named", "org/ambiguous", "org/no-info"}


def test_model_family_is_the_first_architecture_of_config_json(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_model("bigscience/bloom-1b1")  # the default config.json: BloomForCausalLM
    hub.add_model("gpt2", config={"architectures": ["GPT2LMHeadModel", "Other"], "model_type": "gpt2"})
    hub.add_model("org/no-arch", config={"model_type": "llama"})
    hub.add_model("org/no-config", files=["README.md", "adapter_config.json"])
    hub.add_model("org/broken", contents={"config.json": b"{not json"})
    result = load(
        tmp_path,
        model("bloom", "bigscience/bloom-1b1"),
        model("g", "gpt2"),
        model("n", "org/no-arch"),
        model("c", "org/no-config"),
        model("b", "org/broken"),
    )
    facts = gather(result, hub)
    assert facts.model_families == {"bigscience/bloom-1b1": "BloomForCausalLM", "gpt2": "GPT2LMHeadModel"}
    assert facts.dataset_features == {} and facts.dataset_descriptions == {}
    # one GET of the file each, following the Hub's redirect; no HEAD, no retry
    bloom = [r for r in hub.requests if "bloom" in r.path]
    assert [(r.method, r.path.split("/")[1:3]) for r in bloom] == [
        ("GET", ["bigscience", "bloom-1b1"]),
        ("GET", ["api", "resolve-cache"]),
    ]
    assert {r.method for r in hub.requests} == {"GET"}


def test_token_is_sent_only_from_the_variable_hf_token_env_names(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/private", private=True, token=SECRET)
    hub.add_model("meta/llama", gated=True, token=SECRET, config={"architectures": ["LlamaForCausalLM"]})
    hub.add_model("org/public")
    hub.add_model("org/unset-var")
    result = load(
        tmp_path,
        dataset("p", "org/private", token_env="MY_HF_TOKEN"),
        model("llama", "meta/llama", token_env="MY_HF_TOKEN"),
        model("pub", "org/public"),
        model("u", "org/unset-var", token_env="UNSET_TOKEN_VAR"),
    )
    facts = gather(result, hub, MY_HF_TOKEN=SECRET)
    assert facts.dataset_features == {"org/private": ("instruction", "response")}
    assert facts.model_families == {"meta/llama": "LlamaForCausalLM", "org/public": "BloomForCausalLM"}
    by_repo: dict[str, set[bool]] = {}
    for r in hub.requests:
        repo = next(name for name in ("private", "llama", "public", "unset-var") if name in r.path)
        by_repo.setdefault(repo, set()).add(r.authorized)
    # the ambient HF_TOKEN is never sent; a variable that is not set means no request at all
    assert by_repo == {"private": {True}, "llama": {True}, "public": {False}}


def test_without_its_token_a_gated_or_private_repo_gives_no_facts(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/private", private=True, token=SECRET)
    hub.add_model("meta/llama", gated=True, token=SECRET)
    hub.add_token("hf_knownButNotGranted")
    result = load(tmp_path, dataset("p", "org/private"), model("llama", "meta/llama", token_env="T"))
    assert gather(result, hub, T="hf_knownButNotGranted") == HubFacts()


def test_a_token_named_by_one_manifest_serves_every_manifest_of_the_repo(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_model("meta/llama", gated=True, token=SECRET, config={"architectures": ["LlamaForCausalLM"]})
    result = load(tmp_path, model("a", "meta/llama"), model("b", "meta/llama", token_env="T"), model("c", "meta/llama"))
    assert gather(result, hub, T=SECRET).model_families == {"meta/llama": "LlamaForCausalLM"}
    assert [r.method for r in hub.requests] == ["GET", "GET"]  # asked once (the redirect, then the file)
    assert all(r.authorized for r in hub.requests)


def test_offline_asks_nothing(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/d")
    hub.add_model("org/m")
    result = load(tmp_path, dataset("d", "org/d"), model("m", "org/m"))
    assert gather(result, hub, offline=True) == HubFacts()
    assert gather(result, hub, HF_HUB_OFFLINE="1") == HubFacts()
    assert hub.requests == []


def test_library_offline_mode_gives_no_facts(tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub.add_model("org/m")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE was set when it was imported
    assert gather(load(tmp_path, model("m", "org/m")), hub) == HubFacts()
    assert hub.requests == []


def test_missing_repos_and_failures_are_simply_left_out(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/here")
    hub.add_model("org/down")
    hub.fail_next(1, status=503)  # the only request fails: no retry, the repo is left out
    assert gather(load(tmp_path, model("down", "org/down")), hub) == HubFacts()
    assert len(hub.requests) == 1
    result = load(
        tmp_path,
        dataset("here", "org/here"),
        dataset("gone", "org/no-such-data"),
        model("gone", "org/no-such-model"),
        model("bad", "'org/two words'"),
    )
    facts = gather(result, hub)
    assert set(facts.dataset_features) == set(facts.dataset_descriptions) == {"org/here"}
    assert facts.model_families == {}


def test_unreachable_hub_gives_no_facts(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the facts are gathered: connection refused
    result = load(tmp_path, dataset("d", "org/d"), model("m", "org/m"))
    facts = gather_hub_facts(result.manifests, environ={"HF_ENDPOINT": f"http://127.0.0.1:{port}"}, offline=False)
    assert facts == HubFacts()


def test_each_repo_is_asked_once_many_at_a_time(tmp_path: Path, hub: FakeHub) -> None:
    for i in range(20):
        hub.add_model(f"org/m{i:02}", config={"architectures": [f"Arch{i:02}"]})
    docs = [model(f"m{i:02}", f"org/m{i % 20:02}") for i in range(40)]
    facts = gather(load(tmp_path, *docs), hub)
    assert facts.model_families == {f"org/m{i:02}": f"Arch{i:02}" for i in range(20)}
    assert len(hub.requests) == 40  # 20 repos: a redirect and a file each


def test_the_fake_serves_what_hf_hub_download_asks(tmp_path: Path, hub: FakeHub) -> None:
    """The fake's file endpoints answer the library's own download path (HEAD, redirect, metadata)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RemoteEntryNotFoundError, RepositoryNotFoundError

    hub.add_model("org/m", config={"architectures": ["MistralForCausalLM"]})
    hub.add_model("meta/llama", gated=True, token=SECRET)
    cache = tmp_path / "cache"
    path = hf_hub_download("org/m", "config.json", endpoint=hub.url, token=False, cache_dir=cache)
    assert json.loads(Path(path).read_text()) == {"architectures": ["MistralForCausalLM"]}
    assert [r.method for r in hub.requests] == ["HEAD", "HEAD", "GET"]
    path = hf_hub_download("meta/llama", "config.json", endpoint=hub.url, token=SECRET, cache_dir=cache)
    assert json.loads(Path(path).read_text())["architectures"] == ["BloomForCausalLM"]
    with pytest.raises(GatedRepoError):
        hf_hub_download("meta/llama", "tokenizer.json", endpoint=hub.url, token=False, cache_dir=cache)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/m", "no-such-file.json", endpoint=hub.url, token=False, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/none", "config.json", endpoint=hub.url, token=False, cache_dir=cache)
