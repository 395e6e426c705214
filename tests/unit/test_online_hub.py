"""reconciler.online.hub: DS-002 / MD-002 against a fake Hub over real HTTP on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.diagnostics import Diagnostic, Severity
from reconciler.manifests import LoadResult, resolve_positions
from reconciler.online import check_hub

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so `tests.fakes` imports under plain `pytest` too
    sys.path.insert(0, str(REPO))

from tests.fakes.hub_server import FakeHub  # noqa: E402
from tests.unit.hub_cases import SECRET, dataset, load, model  # noqa: E402

pytestmark = pytest.mark.usefixtures("hub_process_env")  # the fixtures come from tests/unit/hub_cases.py


def run(result: LoadResult, hub: FakeHub, offline: bool = False, **environ: str) -> list[Diagnostic]:
    diags = check_hub(result.manifests, environ={"HF_ENDPOINT": hub.url, **environ}, offline=offline)
    return resolve_positions(diags, result.sources)


def text_of(diags: list[Diagnostic]) -> str:
    return "\n".join(f"{d.summary}\n{d.hint or ''}\n{d.detail or ''}" for d in diags)


def test_found_repos_pass_with_one_anonymous_request_each(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/tickets")
    hub.add_model("bigscience/bloom-1b1")
    hub.add_model("gpt2")  # a repo id without a namespace
    result = load(
        tmp_path,
        dataset("tickets", "org/tickets"),
        model("bloom", "bigscience/bloom-1b1"),
        model("g", "gpt2"),
    )
    assert run(result, hub) == []
    assert sorted(hub.requests) == [
        ("GET", "/api/datasets/org/tickets", False),
        ("GET", "/api/models/bigscience/bloom-1b1", False),
        ("GET", "/api/models/gpt2", False),
    ]


def test_missing_dataset_and_model_are_errors_at_the_name_field(tmp_path: Path, hub: FakeHub) -> None:
    result = load(tmp_path, dataset("tickets", "org/no-such-data"), model("bloom", "org/no-such-model"))
    diags = run(result, hub)
    assert [(d.code, d.severity, d.location.line if d.location else 0) for d in diags] == [
        ("DS-002", Severity.ERROR, 7),
        ("MD-002", Severity.ERROR, 15),
    ]
    ds, md = diags
    assert ds.location is not None and ds.location.file == str(tmp_path / "hub.yaml")
    assert ds.field == "spec.huggingface_name" and md.field == "spec.huggingface_model_name"
    assert "org/no-such-data" in ds.summary and "not found" in ds.summary
    assert "org/no-such-model" in md.summary
    assert (ds.address, md.address) == ("Dataset/tickets", "Model/bloom")


def test_gated_repo_without_token_is_an_error(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_model("meta/llama", gated=True, token=SECRET)
    [diag] = run(load(tmp_path, model("llama", "meta/llama")), hub)
    assert diag.code == "MD-002" and diag.severity is Severity.ERROR
    assert "gated" in diag.summary and diag.hint and "hf_token_env" in diag.hint


def test_gated_repo_with_token_from_named_variable_passes(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/gated", gated=True, token=SECRET)
    result = load(tmp_path, dataset("gated", "org/gated", token_env="MY_HF_TOKEN"))
    assert run(result, hub, MY_HF_TOKEN=SECRET) == []
    assert hub.requests == [
        ("GET", "/api/datasets/org/gated", True),
        ("GET", "/api/datasets/org/gated/auth-check", True),
    ]


@pytest.mark.parametrize("wrong", ["hf_knownButNotGranted", "hf_unknownToTheHub"])
def test_refused_token_is_an_error_that_never_shows_the_token(
    tmp_path: Path, hub: FakeHub, wrong: str
) -> None:
    hub.add_model("meta/llama", gated=True, token=SECRET)
    hub.add_token("hf_knownButNotGranted")
    [diag] = run(
        load(tmp_path, model("llama", "meta/llama", token_env="LLAMA_TOKEN")), hub, LLAMA_TOKEN=wrong
    )
    assert diag.code == "MD-002" and diag.severity is Severity.ERROR
    expected = {
        "hf_knownButNotGranted": "has not been granted access",
        "hf_unknownToTheHub": "refused the token",
    }
    assert expected[wrong] in diag.summary and "LLAMA_TOKEN" in diag.summary
    assert wrong not in text_of([diag]) and SECRET not in text_of([diag])


def test_private_repo_needs_its_token(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_dataset("org/private", private=True, token=SECRET)
    assert run(load(tmp_path, dataset("p", "org/private", token_env="T")), hub, T=SECRET) == []
    [diag] = run(load(tmp_path, dataset("p", "org/private")), hub)
    assert diag.code == "DS-002" and "not found" in diag.summary


def test_token_variable_not_set_is_on003_and_asks_nothing(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_model("meta/llama", gated=True, token=SECRET)
    result = load(tmp_path, model("llama", "meta/llama", token_env="UNSET_TOKEN_VAR"))
    [diag] = run(result, hub, OTHER=SECRET)
    assert (diag.code, diag.severity, diag.field) == ("ON-003", Severity.ERROR, "spec.hf_token_env")
    assert diag.location is not None and diag.location.line == 8
    assert "UNSET_TOKEN_VAR" in diag.summary
    assert hub.requests == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_error_is_a_warning_not_an_error(tmp_path: Path, hub: FakeHub, status: int) -> None:
    hub.add_model("org/m")
    hub.fail_next(1, status=status)
    [diag] = run(load(tmp_path, model("m", "org/m")), hub)
    assert (diag.code, diag.severity) == ("ON-002", Severity.WARNING)
    assert "org/m" in diag.summary and str(status) in diag.summary
    assert len(hub.requests) == 1  # no retry loop


def test_unreachable_hub_is_a_warning(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the check runs: connection refused
    result = load(tmp_path, model("m", "org/m", token_env="T"))
    [diag] = check_hub(
        result.manifests, environ={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "T": SECRET}, offline=False
    )
    assert (diag.code, diag.severity) == ("ON-002", Severity.WARNING)
    assert "org/m" in diag.summary and SECRET not in text_of([diag])


def test_offline_skips_every_check_without_a_request(tmp_path: Path, hub: FakeHub) -> None:
    result = load(tmp_path, dataset("d", "org/d"), model("m", "org/m", token_env="UNSET_TOKEN_VAR"))
    diags = run(result, hub, offline=True)
    assert [(d.code, d.severity, d.field) for d in diags] == [("ON-001", Severity.INFO, "spec.huggingface_name")]
    assert "2 Hub checks skipped (1 DS-002, 1 MD-002): running offline" in diags[0].summary
    assert run(result, hub, HF_HUB_OFFLINE="1")[0].code == "ON-001"
    assert hub.requests == []


def test_library_offline_mode_reads_as_skipped(
    tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE was set when it was imported
    [diag] = run(load(tmp_path, model("m", "org/m")), hub)
    assert (diag.code, diag.severity) == ("ON-001", Severity.INFO)
    assert hub.requests == []


def test_same_repo_is_asked_once(tmp_path: Path, hub: FakeHub) -> None:
    hub.add_model("org/m")
    result = load(
        tmp_path, model("a", "org/m"), model("b", "org/m"), model("c", "org/gone"), model("d", "org/gone")
    )
    diags = run(result, hub)
    assert [(d.code, d.address) for d in diags] == [("MD-002", "Model/c"), ("MD-002", "Model/d")]
    assert sorted(r.path for r in hub.requests) == ["/api/models/org/gone", "/api/models/org/m"]


def test_invalid_repo_id_is_an_error_without_a_request(tmp_path: Path, hub: FakeHub) -> None:
    [diag] = run(load(tmp_path, model("m", "'org/two words'")), hub)
    assert diag.code == "MD-002" and "not a valid" in diag.summary
    assert hub.requests == []


def test_many_checks_run_concurrently_and_come_back_in_source_order(tmp_path: Path, hub: FakeHub) -> None:
    docs = [model(f"m{i:02}", f"org/m{i:02}") for i in range(40)]
    diags = run(load(tmp_path, *docs), hub)
    assert [d.address for d in diags] == [f"Model/m{i:02}" for i in range(40)]
    assert len(hub.requests) == 40


def test_importing_the_package_does_not_import_huggingface_hub() -> None:
    code = "import sys, reconciler.online; sys.exit('huggingface_hub' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
