"""An installed ftctl, as a user gets it: the wheel built from this tree, installed into a fresh
virtualenv outside the checkout (its dependencies from the package index pip is configured with).

It checks config bodies as a checkout does (the schemas ship as package data), says so when they
are missing (CF-107), never writes into site-packages (`ftctl schema`), and `ftctl --help` loads
no heavy module. One virtualenv per session: building and installing take most of this file's time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO

pytestmark = pytest.mark.slow

# What the wheel is built from: the tracked sources, copied, so the build writes nothing into the checkout.
SOURCES = ("pyproject.toml", "README.md", "reconciler", "runners", "schemas")
# Modules `ftctl --help` must not load: they cost a noticeable share of a second each, and no
# command's help needs them.
HEAVY = ("pydantic", "sqlalchemy", "jsonschema", "yaml", "ruamel", "huggingface_hub", "requests", "httpx",
         "torch", "transformers", "peft", "trl", "datasets", "mlflow")
# One typo per config type, and the code each must raise: (config type, body, code).
TYPOS = {
    "training-typo": ("training_arguments", {"num_train_epoch": 3}, "CF-101"),
    "training-value": ("training_arguments", {"learning_rate": "fast"}, "CF-102"),
    "lora-typo": ("lora_config", {"r": 8, "lora_alpah": 16}, "CF-101"),
    "bnb-typo": ("bitsandbytes_config", {"load_in_4bits": True}, "CF-101"),
    "generation-typo": ("generation_config", {"temperatur": 0.7}, "CF-101"),
    # axolotl bodies are free-form YAML (no library class types their keys): a broken one is the typo
    "axolotl-typo": ("axolotl", "base_model: x\n  datasets: [\n", "CF-003"),
}


def _env() -> dict[str, str]:
    """The caller's environment without what would point the installed ftctl at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env | {"PYTHONDONTWRITEBYTECODE": "1"}


def _run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh virtualenv holding ftctl from a wheel of this tree."""
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)], root)
    assert built.returncode == 0, built.stderr
    [wheel] = (root / "dist").glob("ftctl-*.whl")
    created = _run([sys.executable, "-m", "venv", str(root / "venv")], root)
    assert created.returncode == 0, created.stderr
    bin_dir = root / "venv" / "bin"
    done = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], root)
    assert done.returncode == 0, done.stderr
    return bin_dir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project outside the checkout with one Config per typo."""
    (tmp_path / "ftctl.toml").touch()
    docs = [
        {"apiVersion": "ftctl/v1", "kind": "Config", "metadata": {"name": name}, "spec": {"type": config_type, "config": body}}
        for name, (config_type, body, _) in TYPOS.items()
    ]
    (tmp_path / "configs.yaml").write_text("---\n".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return tmp_path


def _package(installed: Path, cwd: Path) -> Path:
    """Where the installed ftctl's package lives."""
    found = _run([str(installed / "python"), "-c", "import reconciler, pathlib; print(pathlib.Path(reconciler.__file__).parent)"], cwd)
    return Path(found.stdout.strip())


def _validate(installed: Path, project: Path) -> tuple[int, dict]:
    done = _run([str(installed / "ftctl"), "validate", "--offline", "--no-cache", "--format", "json", "."], project)
    return done.returncode, json.loads(done.stdout)


def test_the_installed_package_is_not_the_checkout(installed: Path, project: Path) -> None:
    package = _package(installed, project)
    assert package.is_relative_to(installed.parent) and not package.is_relative_to(REPO)
    assert (package / "_schemas" / "config-bodies" / "lora_config.schema.json").is_file()
    assert not (package / "_schemas").is_symlink()  # the wheel carries the files, not the checkout's link


def test_a_typo_in_each_config_type_is_an_error(installed: Path, project: Path) -> None:
    status, report = _validate(installed, project)
    assert status == 1 and report["valid"] is False
    found = {(d["address"], d["code"]) for d in report["diagnostics"] if d["severity"] == "error"}
    assert found == {(f"Config/{name}", code) for name, (_, _, code) in TYPOS.items()}


def test_missing_schemas_are_an_error_that_says_so(installed: Path, project: Path) -> None:
    bodies = _package(installed, project) / "_schemas" / "config-bodies"
    aside = bodies.with_name("config-bodies.aside")
    bodies.rename(aside)
    try:
        status, report = _validate(installed, project)
    finally:
        aside.rename(bodies)
    assert status == 1 and report["valid"] is False
    library_backed = {f"Config/{name}" for name, (config_type, _, _) in TYPOS.items() if config_type != "axolotl"}
    assert {d["address"] for d in report["diagnostics"] if d["code"] == "CF-107"} == library_backed
    assert all("schema for it" in d["summary"] and "is missing" in d["summary"] for d in report["diagnostics"] if d["code"] == "CF-107")


def test_schema_refuses_to_write_into_an_install(installed: Path, tmp_path: Path) -> None:
    schemas = _package(installed, tmp_path) / "_schemas"
    before = {p: p.read_bytes() for p in schemas.rglob("*") if p.is_file()}
    done = _run([str(installed / "ftctl"), "schema"], tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("ftctl: error: ftctl schema regenerates a checkout's schemas/") and "--out FOLDER" in line
    assert {p: p.read_bytes() for p in schemas.rglob("*") if p.is_file()} == before
    checked = _run([str(installed / "ftctl"), "schema", "--check"], tmp_path)
    assert checked.returncode == 0, checked.stderr  # the shipped schemas are those the models generate
    written = _run([str(installed / "ftctl"), "schema", "--out", str(tmp_path / "out")], tmp_path)
    assert written.returncode == 0 and (tmp_path / "out" / "manifest.schema.json").is_file()


def test_help_loads_no_heavy_module(installed: Path, tmp_path: Path) -> None:
    done = _run([str(installed / "python"), "-X", "importtime", str(installed / "ftctl"), "--help"], tmp_path)
    assert done.returncode == 0 and "validate" in done.stdout
    # -X importtime writes one line per module: "import time: self | cumulative | name"
    loaded = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "reconciler" in loaded and "click" in loaded
    assert not loaded & set(HEAVY)
