"""No secret value ever leaves the environment it was given in: not in any output format, log line,
plan file, store row, job input or other file ftctl writes, on the local and the CML backend.

The secrets are real environment values a user has (a Hugging Face token named by `hf_token_env`,
the CML API key, a CI token) plus one written into a manifest by mistake. Every command a user or
CI runs is run through the real CLI, then stdout, stderr and every file under the project are
searched for each value. The CML run is the one place a named secret must arrive (as an environment
value of the job run): that is checked too, so the test cannot pass by dropping the token.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, ftctl, make_demo, show
from tests.fakes.cml_engine import STUB_RUNNERS, RunnerEngine
from tests.fakes.cml_server import FakeCML

HF_TOKEN = "hf_TopSecretToken0123456789"
CML_KEY = "cmlkey-0123456789-TopSecret"
CI_TOKEN = "ghp_TopSecretCiToken0123456789"
LEAKED = "hf_WrittenIntoAManifest987654"
SECRETS = (HF_TOKEN, CML_KEY, CI_TOKEN, LEAKED)
# ftctl's parse cache is kept inside the project here, so the search below covers it too.


def _name_the_token(root: Path) -> None:
    """The demo's jobs name the Hugging Face token (as a user with a gated model would)."""
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    text = text.replace("  adapter_name: demo-ticketing-lora\n", "  adapter_name: demo-ticketing-lora\n  hf_token_env: HUGGINGFACE_ACCESS_TOKEN\n")
    text = text.replace("  generation_config: demo-generation\n", "  generation_config: demo-generation\n  hf_token_env: HUGGINGFACE_ACCESS_TOKEN\n")
    assert text.count("hf_token_env") == 2
    pipeline.write_text(text, encoding="utf-8")


def _leaked_manifest(root: Path) -> Path:
    bad = root / "bad" / "dataset.yaml"
    bad.parent.mkdir()
    bad.write_text("apiVersion: ftctl/v1\nkind: Dataset\nmetadata: {name: leaky}\nspec:\n  type: huggingface\n"
                   f"  huggingface_name: org/ds\n  hf_token: {LEAKED}\n", encoding="utf-8")
    return bad


def _files_holding_secrets(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.parent.name == "bad":  # the user's own file, not one ftctl wrote
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(root)} holds {s[:6]}…" for s in SECRETS if s.encode() in data]
    return found


@pytest.fixture
def outputs() -> list[str]:
    return []


def _run(root: Path, outputs: list[str], *args: str, env: dict[str, str], ok: tuple[int, ...] = (0, 2)) -> str:
    proc = ftctl(root, *args, env=env, timeout=300)
    outputs.append(f"$ ftctl {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    assert proc.returncode in ok, show(proc)
    return proc.stdout


def _every_command(root: Path, outputs: list[str], env: dict[str, str]) -> None:
    bad = _leaked_manifest(root)
    for fmt in ("text", "json", "github", "sarif"):
        _run(root, outputs, "validate", "--offline", "--format", fmt, str(bad), env=env, ok=(1,))
        _run(root, outputs, "validate", "--offline", "--format", fmt, DEMO, env=env, ok=(0,))
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "plan", "--offline", "-o", "plan.json", DEMO, env=env)
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--wait", "--poll", "0.2", DEMO, env=env, ok=(0,))
    for fmt in ("table", "json"):
        _run(root, outputs, "status", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "logs", "FineTuningJob/demo-ticketing-lora", env=env, ok=(0,))


def _assert_no_secret(root: Path, outputs: list[str]) -> None:
    printed = "\n".join(outputs)
    assert not [s for s in SECRETS if s in printed], "a secret was printed"
    assert _files_holding_secrets(root) == []
    assert "SC-004" in printed  # the manifest's token was reported (by name), so it was looked at


def test_no_secret_reaches_output_or_files_on_cml(tmp_path: Path, outputs: list[str]) -> None:
    root = make_demo(tmp_path / "project")
    _name_the_token(root)
    with FakeCML(CML_KEY) as cml:
        cml.add_studio_templates()
        engine = RunnerEngine(root)
        cml.on_run(engine)
        env = {**cml.env(), "FTCTL_BACKEND": "cml", "FTCTL_CACHE_DIR": str(root / ".cache"), "FTCTL_CML_RUNNERS_DIR": str(STUB_RUNNERS),
               "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN, "GITHUB_TOKEN": CI_TOKEN}
        _every_command(root, outputs, env)
        runs = list(cml.runs.values())
        bodies = json.dumps([r for r in cml.requests if r.operation in ("create_job", "create_model_build")], default=str)
    assert runs and all(run.environment.get("HUGGINGFACE_ACCESS_TOKEN") == HF_TOKEN for run in runs if "train" in run.job_name)
    assert HF_TOKEN not in bodies and CML_KEY not in bodies  # jobs keep only the variable's name
    _assert_no_secret(root, outputs)


def test_no_secret_reaches_output_or_files_locally(tmp_path: Path, outputs: list[str]) -> None:
    root = make_demo(tmp_path / "project")
    _name_the_token(root)
    env = {"FTCTL_BACKEND": "fake", "FTCTL_CACHE_DIR": str(root / ".cache"), "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN, "CDSW_APIV2_KEY": CML_KEY, "GITHUB_TOKEN": CI_TOKEN}
    bad = _leaked_manifest(root)
    for fmt in ("text", "json", "github", "sarif"):
        _run(root, outputs, "validate", "--offline", "--format", fmt, str(bad), env=env, ok=(1,))
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "apply", "--offline", "--auto-approve", DEMO, env=env, ok=(0,))
    _run(root, outputs, "status", "--offline", "--format", "json", DEMO, env=env)
    inputs = list((root / ".app" / "jobs").glob("*/input.json"))
    assert inputs and all("HUGGINGFACE_ACCESS_TOKEN" in p.read_text() for p in inputs)  # named, not valued
    _assert_no_secret(root, outputs)
