"""No secret value ever leaves the environment it was given in: not in any output format, log line,
plan file, store row, job input or other file ftctl writes, on the local and the CML backend.

The secrets are real environment values a user has (a Hugging Face token named by `hf_token_env`,
the CML API key, a CI token) plus one written into a manifest by mistake. Every command a user or
CI runs is run through the real CLI, then stdout, stderr and every file under the project are
searched for each value. The CML run is the one place a named secret must arrive (as an environment
value of the job run): that is checked too, so the test cannot pass by dropping the token.

Each hostile case plants its own distinctive value: a literal `hub_token` in a config body, a nested
`api_key`, an axolotl body's `wandb_api_key`, a token as the value of `hf_token_env`, a token in a
wrong-typed field, a URL with credentials in a location (each SC-002 or SC-004, never echoed), and a
`{from_env: NAME}` reference in the demo's training arguments, whose value the job must receive (the
stub runner reports a digest of what it got). A Studio-written row holding a token is the last case:
every command that reads it (drift, plan, status, state pull, import, export-manifests) keeps it out,
a plan made from a snapshot of it still applies, and adopting and changing it leaves no trace of it
in ftctl's history.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, dump_table, ftctl, make_demo, query, show, tables
from tests.fakes.cml_engine import STUB_RUNNERS, RunnerEngine
from tests.fakes.cml_server import FakeCML
from tests.fakes.studio_store import create_studio_store

HF_TOKEN = "hf_TopSecretToken0123456789"
CML_KEY = "cmlkey-0123456789-TopSecret"
CI_TOKEN = "ghp_TopSecretCiToken0123456789"
LEAKED = "hf_WrittenIntoAManifest987654"
REFERENCED = "hf_PlantedReferenceValue4444dddd"  # the value of PLANTED_REF_TOKEN, which the demo's config names
# bad/<file> -> (its manifest, the value it plants, the code that must report it, the line it points at)
HOSTILE: dict[str, tuple[str, str, str, int]] = {
    "body-token.yaml": ("kind: Config\nmetadata: {name: body-token}\nspec:\n  type: training_arguments\n"
                        "  config: {num_train_epochs: 1, hub_token: hf_PlantedBodyToken0000aaaa1111}\n",
                        "hf_PlantedBodyToken0000aaaa1111", "SC-004", 6),
    "nested-key.yaml": ("kind: Config\nmetadata: {name: nested-key}\nspec:\n  type: training_arguments\n  config:\n"
                        "    num_train_epochs: 1\n    deepspeed: {zero: {api_key: PlantedNestedApiKey-2222bbbb}}\n",
                        "PlantedNestedApiKey-2222bbbb", "SC-004", 8),
    "axolotl.yaml": ("kind: Config\nmetadata: {name: axolotl-wandb}\nspec:\n  type: axolotl\n  config: |\n"
                     "    base_model: org/model\n    wandb_api_key: PlantedWandbApiKey-3333cccc\n",
                     "PlantedWandbApiKey-3333cccc", "SC-004", 6),
    "token-env.yaml": ("kind: Model\nmetadata: {name: token-env}\nspec:\n  type: huggingface\n"
                       "  huggingface_model_name: org/model\n  hf_token_env: hf_PlantedTokenEnvValue5555eeee\n",
                       "hf_PlantedTokenEnvValue5555eeee", "SC-004", 7),
    "wrong-type.yaml": ("kind: Model\nmetadata: {name: wrong-type}\nspec:\n  type: huggingface\n"
                        "  huggingface_model_name: org/model\n  hf_token_env: [hf_PlantedWrongTyped6666ffff]\n",
                        "hf_PlantedWrongTyped6666ffff", "SC-002", 7),
    "wrong-field.yaml": ("kind: FineTuningJob\nmetadata: {name: wrong-field}\nspec:\n  base_model: tiny-llama\n"
                         "  dataset: demo-tickets\n  prompt: demo-ticketing\n  num_epochs: hf_PlantedWrongField7777gggg\n",
                         "hf_PlantedWrongField7777gggg", "SC-002", 8),
    "url.yaml": ("kind: Dataset\nmetadata: {name: url-creds}\nspec:\n  type: project_csv\n"
                 "  location: https://user:PlantedUrlPassword8888hhhh@example.com/data.csv\n",
                 "PlantedUrlPassword8888hhhh", "SC-004", 6),
}
SECRETS = (HF_TOKEN, CML_KEY, CI_TOKEN, LEAKED, REFERENCED, *(planted for _, planted, _, _ in HOSTILE.values()))
# ftctl's parse cache is kept inside the project here, so the search below covers it too.


def _name_the_token(root: Path) -> None:
    """The demo's jobs name the Hugging Face token (as a user with a gated model would)."""
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    text = text.replace("  adapter_name: demo-ticketing-lora\n", "  adapter_name: demo-ticketing-lora\n  hf_token_env: HUGGINGFACE_ACCESS_TOKEN\n")
    text = text.replace("  generation_config: demo-generation\n", "  generation_config: demo-generation\n  hf_token_env: HUGGINGFACE_ACCESS_TOKEN\n")
    assert text.count("hf_token_env") == 2
    pipeline.write_text(text, encoding="utf-8")


def _reference_the_token(root: Path) -> None:
    """The demo's training arguments name a secret the job needs (`{from_env: PLANTED_REF_TOKEN}`)."""
    configs = root / DEMO / "configs.yaml"
    text = configs.read_text(encoding="utf-8").replace("    seed: 42\n", "    seed: 42\n    hub_token: {from_env: PLANTED_REF_TOKEN}\n")
    assert "PLANTED_REF_TOKEN" in text
    configs.write_text(text, encoding="utf-8")


def _leaked_manifest(root: Path) -> Path:
    """bad/: the user's own files (never searched), each writing a secret where none may be."""
    bad = root / "bad"
    bad.mkdir()
    (bad / "dataset.yaml").write_text("apiVersion: ftctl/v1\nkind: Dataset\nmetadata: {name: leaky}\nspec:\n  type: huggingface\n"
                                      f"  huggingface_name: org/ds\n  hf_token: {LEAKED}\n", encoding="utf-8")
    for name, (text, _, _, _) in HOSTILE.items():
        (bad / name).write_text(f"apiVersion: ftctl/v1\n{text}", encoding="utf-8")
    return bad


def _assert_each_case_reported(root: Path, printed: str) -> None:
    """Every hostile file was looked at: its code at its line (that the value is not shown is checked apart)."""
    for name, (_, _, code, line) in HOSTILE.items():
        where = re.escape(str(root / "bad" / name))
        assert re.search(rf"^{where}:{line}:\d+: {code} error", printed, re.M), f"{name}: no {code} at line {line}"


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


def _refuse_hostile(root: Path, outputs: list[str], env: dict[str, str]) -> None:
    """Each hostile manifest is reported in every format; nothing is planned, written or applied."""
    bad = _leaked_manifest(root)
    for fmt in ("text", "json", "github", "sarif"):
        _run(root, outputs, "validate", "--offline", "--format", fmt, str(bad), env=env, ok=(1,))
    _assert_each_case_reported(root, outputs[-4])
    for fmt in ("text", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, "-o", "refused.json", str(bad), env=env, ok=(1,))
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", str(bad), env=env, ok=(1,))
    assert not (root / "refused.json").exists()


def _every_command(root: Path, outputs: list[str], env: dict[str, str]) -> None:
    _refuse_hostile(root, outputs, env)
    for fmt in ("text", "json", "github", "sarif"):
        _run(root, outputs, "validate", "--offline", "--format", fmt, DEMO, env=env, ok=(0,))
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "plan", "--offline", "-o", "plan.json", DEMO, env=env)
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.2", DEMO, env=env, ok=(0,))
    for fmt in ("table", "json"):
        _run(root, outputs, "status", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "state", "pull", "-o", "snapshot.json", env=env, ok=(0,))
    _run(root, outputs, "logs", "FineTuningJob/demo-ticketing-lora", env=env, ok=(0,))


def _assert_no_secret(root: Path, outputs: list[str]) -> None:
    printed = "\n".join(outputs)
    assert not [s for s in SECRETS if s in printed], "a secret was printed"
    assert _files_holding_secrets(root) == []
    assert "SC-004" in printed  # the manifest's token was reported (by name), so it was looked at


def _received(root: Path) -> set[str]:
    """What the train stubs report of the `*_token` values they received: digests, never values."""
    results = [json.loads(p.read_text()) for p in root.rglob("result.json")]
    return {digest for r in results for digest in r["artifacts"].get("secret_digests", {}).values()}


@contextlib.contextmanager
def _demo_on_cml(tmp_path: Path, **run_env: str) -> Iterator[tuple[Path, FakeCML, RunnerEngine, dict[str, str]]]:
    """The demo with its Hub token named and a config secret referenced, on the fake CML server whose
    runs run the stub runners (with `run_env` added to each run's environment): (root, cml, engine, env)."""
    root = make_demo(tmp_path / "project")
    _name_the_token(root)
    _reference_the_token(root)
    with FakeCML(CML_KEY) as cml:
        cml.add_studio_templates()
        engine = RunnerEngine(root)
        cml.on_run(lambda job, run, environment: engine(job, run, {**environment, **run_env}))
        env = {**cml.env(), "FTCTL_BACKEND": "cml", "FTCTL_CACHE_DIR": str(root / ".cache"), "FTCTL_CML_RUNNERS_DIR": str(STUB_RUNNERS),
               "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN, "PLANTED_REF_TOKEN": REFERENCED}
        yield root, cml, engine, env


def test_no_secret_reaches_output_or_files_on_cml(tmp_path: Path, outputs: list[str]) -> None:
    with _demo_on_cml(tmp_path) as (root, cml, _, env):
        _every_command(root, outputs, {**env, "GITHUB_TOKEN": CI_TOKEN})
        runs = list(cml.runs.values())
        bodies = json.dumps([r for r in cml.requests if r.operation in ("create_job", "create_model_build")], default=str)
    trains = [run for run in runs if "train" in run.job_name]
    assert trains and all(run.environment.get("HUGGINGFACE_ACCESS_TOKEN") == HF_TOKEN for run in trains)
    assert all(run.environment.get("PLANTED_REF_TOKEN") == REFERENCED for run in trains)  # the reference's value, for the run only
    assert hashlib.sha256(REFERENCED.encode()).hexdigest() in _received(root)  # and the runner resolved it
    assert not [s for s in (HF_TOKEN, CML_KEY, REFERENCED) if s in bodies]  # jobs keep only the variables' names
    _assert_no_secret(root, outputs)


def test_no_secret_reaches_output_or_files_locally(tmp_path: Path, outputs: list[str]) -> None:
    root = make_demo(tmp_path / "project")
    _name_the_token(root)
    _reference_the_token(root)
    env = {"FTCTL_BACKEND": "fake", "FTCTL_CACHE_DIR": str(root / ".cache"), "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN, "CDSW_APIV2_KEY": CML_KEY,
           "GITHUB_TOKEN": CI_TOKEN, "PLANTED_REF_TOKEN": REFERENCED}
    _refuse_hostile(root, outputs, env)
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, DEMO, env=env)
    _run(root, outputs, "plan", "--offline", "-o", "plan.json", DEMO, env=env)
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", DEMO, env=env, ok=(0,))
    _run(root, outputs, "status", "--offline", "--format", "json", DEMO, env=env)
    _run(root, outputs, "state", "pull", "-o", "snapshot.json", env=env, ok=(0,))
    inputs = list((root / ".app" / "jobs").glob("*/*/input.json"))  # <jobs>/<store id>/<job>/input.json
    assert inputs and all("HUGGINGFACE_ACCESS_TOKEN" in p.read_text() for p in inputs)  # named, not valued
    assert any("PLANTED_REF_TOKEN" in p.read_text() for p in inputs)
    _assert_no_secret(root, outputs)


# -- a secret the Studio wrote into a row ---------------------------------------------------------

STUDIO_TOKEN = "hf_PlantedStudioRow9999iiii0000"
ROTATED_TOKEN = "hf_PlantedRotatedRow1212jjjj3434"
DRIFTED_TOKEN = "hf_PlantedDriftedRow5656kkkk7878"  # written by the Studio into the row ftctl adopted
STUDIO_TOKENS = (STUDIO_TOKEN, ROTATED_TOKEN, DRIFTED_TOKEN)
CONFIG_ID = "6f1c2e9a-2b7d-4c4e-9a61-0d3b8f1e2a47"


def _studio_project(root: Path) -> Path:
    """A store where the Studio saved a training config holding a Hub token, and a manifest of one dataset."""
    (root / "m").mkdir(parents=True)
    (root / "ftctl.toml").touch()
    (root / "m" / "data.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    (root / "m" / "dataset.yaml").write_text("apiVersion: ftctl/v1\nkind: Dataset\nmetadata: {name: d}\n"
                                             "spec: {type: project_csv, location: data.csv}\n", encoding="utf-8")
    db = root / ".app" / "state.db"
    db.parent.mkdir()
    create_studio_store(db)
    _studio_writes(db, STUDIO_TOKEN, insert=True)
    return db


def _studio_writes(db: Path, token: str, *, insert: bool = False) -> None:
    body = json.dumps({"num_train_epochs": 1, "hub_token": token})
    conn = sqlite3.connect(db)
    with conn:
        if insert:
            conn.execute("INSERT INTO configs (id, type, description, config, is_default) VALUES (?, 'training_arguments', '', ?, 0)",
                         (CONFIG_ID, body))
        else:
            conn.execute("UPDATE configs SET config = ? WHERE type = 'training_arguments'", (body,))  # the one config
    conn.close()


def _ftctl_tables(db: Path) -> str:
    """Every row of ftctl's own tables (records, history, journal, applies...), as text."""
    return json.dumps({t: dump_table(db, t) for t in sorted(tables(db)) if t.startswith("ftctl_")}, default=str)


def test_a_studio_rows_secret_stays_in_the_studios_row(tmp_path: Path, outputs: list[str]) -> None:
    root = tmp_path / "project"
    db = _studio_project(root)
    env = {"FTCTL_BACKEND": "fake", "FTCTL_CACHE_DIR": str(root / ".cache")}
    _run(root, outputs, "drift", "--offline", "m", env=env)
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--format", fmt, "m", env=env)
    _run(root, outputs, "status", "--offline", "--format", "json", "m", env=env)

    # A plan made from a snapshot (which masks the token) applies while the row is unchanged in the store,
    # and is stale once the Studio changes the row's token.
    _run(root, outputs, "state", "pull", "-o", "before.json", env=env, ok=(0,))
    _run(root, outputs, "plan", "--offline", "--store", "before.json", "-o", "stale.json", "m", env=env)
    _studio_writes(db, ROTATED_TOKEN)
    proc = ftctl(root, "apply", "--auto-approve", "stale.json", env=env)
    assert proc.returncode == 1 and f"configs/{CONFIG_ID}): changed" in proc.stderr, show(proc)
    _run(root, outputs, "state", "pull", "-o", "snapshot.json", env=env, ok=(0,))
    _run(root, outputs, "plan", "--offline", "--store", "snapshot.json", "-o", "plan.json", "m", env=env)
    _run(root, outputs, "apply", "--auto-approve", "plan.json", env=env, ok=(0,))

    _run(root, outputs, "export-manifests", "--out", "exported", env=env, ok=(0,))
    imported = _run(root, outputs, "import", "--out", "imported", "--auto-approve", env=env, ok=(0,))
    variable = "CONFIG_TRAINING_ARGUMENTS_6F1C2E9A_HUB_TOKEN"
    assert f"set {variable}" in imported  # the user is told which variable to set to the row's value
    written = (root / "imported" / "configs.yaml").read_text(encoding="utf-8")
    assert f"from_env: {variable}" in written
    # Adopting replaced the row (its body now names the variable); changing it again replaces it again.
    (root / "imported" / "configs.yaml").write_text(written.replace("num_train_epochs: 1", "num_train_epochs: 2"), encoding="utf-8")
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", "m", "imported", env=env, ok=(0,))
    _run(root, outputs, "plan", "--offline", "--detailed-exitcode", "m", "imported", env=env, ok=(0,))
    # The Studio writes a token into the adopted row again: drift, shown masked, and put back by apply.
    _studio_writes(db, DRIFTED_TOKEN)
    for fmt in ("text", "json", "markdown"):
        _run(root, outputs, "plan", "--offline", "--detailed-exitcode", "--format", fmt, "m", "imported", env=env, ok=(2,))
    _run(root, outputs, "drift", "--offline", "m", "imported", env=env, ok=(2,))
    _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", "m", "imported", env=env, ok=(0,))
    _run(root, outputs, "plan", "--offline", "--detailed-exitcode", "m", "imported", env=env, ok=(0,))

    printed = "\n".join(outputs)
    assert not [s for s in STUDIO_TOKENS if s in printed], "a Studio row's secret was printed"
    assert not [s for s in STUDIO_TOKENS if s in _ftctl_tables(db)], "ftctl copied a row's secret into its own tables"
    history = query(db, "SELECT before, after FROM ftctl_history WHERE kind = 'Config'")
    assert any(before and "(sensitive)" in before for before, _ in history)  # the Studio's row, as it was: masked
    assert any(after and variable in after for _, after in history)  # the row ftctl wrote names the variable
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith("state.db")]  # the Studio's own store aside
    assert [p.name for p in files if any(s.encode() in p.read_bytes() for s in STUDIO_TOKENS)] == []
    assert {"before.json", "snapshot.json", "plan.json", "configs.yaml"} <= {p.name for p in files}


def test_a_job_echoing_its_arguments_leaks_no_secret(tmp_path: Path, outputs: list[str]) -> None:
    """A library that puts what it was given into its error (the train stub with FTCTL_STUB_ECHO_FAIL):
    the secret the runner resolved stays out of the job's log and result, and of what ftctl shows."""
    with _demo_on_cml(tmp_path, FTCTL_STUB_ECHO_FAIL="1") as (root, _, engine, env):
        _run(root, outputs, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.2", DEMO, env=env, ok=(1,))
        _run(root, outputs, "status", "--offline", "--format", "json", DEMO, env=env)
        _run(root, outputs, "logs", "FineTuningJob/demo-ticketing-lora", env=env, ok=(0,))
    printed = "\n".join(outputs)
    assert "rejected training arguments" in printed and "(sensitive)" in printed  # the failure is shown, masked
    assert not [r for r in engine.runs if REFERENCED in r["output"]], "the job's output held the secret"
    assert REFERENCED not in printed and _files_holding_secrets(root) == []
