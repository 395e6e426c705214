"""Files a manifest names, and manifests themselves, that ftctl must not read: the real CLI in a
subprocess with its memory and time capped by the harness (RLIMIT_AS, timeout), never by a speed
assertion. Each refusal is one clear diagnostic naming the path; nothing of the file reaches the
output, the plan file or the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from reconciler import localfiles
from reconciler.facts import TableFact
from reconciler.safeio import ReadRoots, UnsafePathError, project_root
from tests.e2e.helpers import ftctl, show

CAP = 2 * 1024**3  # the CLI's address space: reading /dev/zero whole would fail it, not the machine
TIMEOUT = 60  # a read that blocks on a FIFO would end here, as a failure
PLANTED = "planted-secret-3f9c1e77"


def dataset(name: str, location: str, dataset_type: str = "project_csv") -> str:
    return f"apiVersion: ftctl/v1\nkind: Dataset\nmetadata: {{name: {name}}}\nspec: {{type: {dataset_type}, location: {location}}}\n"


def prompt(dataset_name: str, column: str) -> str:
    return (f"apiVersion: ftctl/v1\nkind: Prompt\nmetadata: {{name: p}}\nspec:\n  dataset: {dataset_name}\n"
            f"  prompt_template: '{{{column}}}'\n  input_template: '{{{column}}}'\n  completion_template: '{{{column}}}'\n")


def model(location: str) -> str:
    return f"apiVersion: ftctl/v1\nkind: Model\nmetadata: {{name: local}}\nspec: {{type: project, location: {location}}}\n"


def project(tmp_path: Path, manifests: str, links: dict[str, str] | None = None) -> Path:
    root = tmp_path / "project"
    (root / "specs").mkdir(parents=True)
    (root / "ftctl.toml").write_text("")
    (root / "specs" / "m.yaml").write_text(manifests)
    for name, target in (links or {}).items():
        (root / "specs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "specs" / name).symlink_to(target)
    return root


def run(root: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return ftctl(root, *args, env={"FTCTL_PLAN_SEED": "seed", **(env or {})}, timeout=TIMEOUT, memory_cap=CAP)


def refused(proc, code: str, path: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, show(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, show(proc)
    hits = [line for line in (proc.stdout + proc.stderr).splitlines() if f" {code} error: " in line]
    assert hits and all(path in line for line in hits), show(proc)


def test_a_dataset_linked_to_the_environment_leaks_nothing_anywhere(tmp_path: Path) -> None:
    root = project(tmp_path, dataset("envs", "env.csv") + "---\n" + prompt("envs", "HOME"), {"env.csv": "/proc/self/environ"})
    env = {"CDSW_APIV2_KEY": PLANTED, "HF_TOKEN": PLANTED}
    outputs = [run(root, "validate", "--offline", "specs", env=env),
               run(root, "plan", "--offline", "specs", "--store", "state.db", "-o", "plan.json", env=env),
               run(root, "apply", "--offline", "--auto-approve", "--create-store", "specs", "--store", "state.db", env=env)]
    for proc in outputs:
        refused(proc, "LD-014", str(root / "specs" / "env.csv"))
        assert PLANTED not in proc.stdout + proc.stderr, show(proc)
    assert not (root / "plan.json").exists()
    for path in root.rglob("*"):  # the store, if one was made, and anything else ftctl wrote
        assert not path.is_file() or PLANTED.encode() not in path.read_bytes(), path
    assert _datasets(root / "state.db") == []


def test_a_dataset_linked_to_etc_passwd_puts_no_line_of_it_in_the_plan(tmp_path: Path) -> None:
    root = project(tmp_path, dataset("users", "users.csv"), {"users.csv": "/etc/passwd"})
    proc = run(root, "plan", "--offline", "specs", "--store", "state.db", "-o", "plan.json")
    refused(proc, "LD-014", str(root / "specs" / "users.csv"))
    assert "root:" not in proc.stdout + proc.stderr and not (root / "plan.json").exists()


@pytest.mark.parametrize("read_roots", ["", "/dev"], ids=["outside", "a-read-root"])
def test_dev_zero_as_a_manifest_and_as_a_model_config_is_not_read(tmp_path: Path, read_roots: str) -> None:
    """/dev/zero is outside the project (LD-014); inside an allowed read root it is still a device
    (LD-015). Read whole, either would exhaust memory."""
    root = project(tmp_path, model("tiny"), {"zero.yaml": "/dev/zero", "tiny/config.json": "/dev/zero"})
    proc = run(root, "validate", "--offline", "specs", env={"FTCTL_READ_ROOTS": read_roots})
    code = "LD-015" if read_roots else "LD-014"
    refused(proc, code, "specs/")
    assert f"specs/zero.yaml: {code} error: specs/zero.yaml " in proc.stdout, show(proc)
    assert f"{code} error: {root / 'specs' / 'tiny' / 'config.json'} " in proc.stdout, show(proc)


def test_fifos_as_a_manifest_and_as_a_data_file_never_block(tmp_path: Path) -> None:
    root = project(tmp_path, dataset("piped", "pipe.csv"))
    os.mkfifo(root / "specs" / "pipe.csv")
    os.mkfifo(root / "specs" / "pipe.yaml")
    proc = run(root, "validate", "--offline", "specs")
    refused(proc, "LD-015", "pipe.")
    assert proc.stdout.count("is a FIFO (named pipe), not a regular file") == 2, show(proc)


def test_a_symlink_out_of_the_project_through_dotdot_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.csv").write_text("secret_column\nvalue\n")
    root = project(tmp_path, dataset("d", "data.csv") + "---\n" + prompt("d", "secret_column"), {"data.csv": "../../outside/data.csv"})
    proc = run(root, "validate", "--offline", "specs")
    refused(proc, "LD-014", str(root / "specs" / "data.csv"))


def test_a_symlink_inside_the_project_is_read_and_a_read_root_lets_shared_data_in(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "more.csv").write_text("instruction,output\nhi,there\n")
    root = project(tmp_path, dataset("d", "data.csv") + "---\n" + prompt("d", "instruction") + "---\n" + dataset("s", "more.csv"),
                   {"data.csv": "../data/real.csv", "more.csv": str(shared / "more.csv")})
    (root / "data").mkdir()
    (root / "data" / "real.csv").write_text("instruction,output\nhello,world\n")
    refused(run(root, "validate", "--offline", "specs"), "LD-014", str(root / "specs" / "more.csv"))
    (root / "ftctl.toml").write_text(f"read_roots = [{json.dumps(str(shared))}]\n")
    proc = run(root, "plan", "--offline", "specs", "--store", "state.db", "-o", "plan.json")
    assert proc.returncode == 0, show(proc)
    features = [c for c in json.loads((root / "plan.json").read_text())["changes"] if c["kind"] == "Dataset"]
    assert len(features) == 2 and "instruction" in json.dumps(features)


def test_a_relative_read_root_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, dataset("d", "data.csv"))
    proc = run(root, "validate", "--offline", "specs", env={"FTCTL_READ_ROOTS": "data"})
    assert proc.returncode == 1 and "FTCTL_READ_ROOTS: data is not an absolute folder" in proc.stderr + proc.stdout, show(proc)
    assert "Traceback" not in proc.stderr


# -- the pure parts ------------------------------------------------------------------------------

def test_the_project_root_is_the_nearest_folder_with_ftctl_toml_else_git_else_the_manifests_folder(tmp_path: Path) -> None:
    specs = tmp_path / "repo" / "team" / "specs"
    specs.mkdir(parents=True)
    assert project_root([str(specs)]) == str(specs.resolve())
    (tmp_path / "repo" / ".git").mkdir()
    assert project_root([str(specs), str(specs / "a.yaml")]) == str((tmp_path / "repo").resolve())
    (tmp_path / "repo" / "team" / "ftctl.toml").write_text("")
    assert project_root([str(specs)]) == str((tmp_path / "repo" / "team").resolve())


def test_a_read_stops_at_its_limit_whatever_the_size_says(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b"x" * 101)
    roots = ReadRoots.of(str(tmp_path))
    assert roots.read(str(tmp_path / "big.json"), limit=200) == b"x" * 101
    assert roots.read(str(tmp_path / "big.json"), limit=10, head=True) == b"x" * 10
    with pytest.raises(UnsafePathError, match="larger than 100 bytes") as info:
        roots.read(str(tmp_path / "big.json"), limit=100)
    assert info.value.code == "LD-016"


@pytest.mark.parametrize(("name", "dataset_type", "short", "mean"), [
    ("d.csv", "project_csv", 2.0, 4.5), ("d.json", "project_json", 2.0, 4.5), ("d.jsonl", "project_jsonl", 16.0, 18.5)])
def test_a_dataset_too_large_to_count_gives_its_columns_and_mean_row_size_from_its_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, dataset_type: str, short: float, mean: float
) -> None:
    rows = [{"a": 1, "b": 2}] * 50 + [{"a": 111, "b": 2222}] * 50  # short rows, then longer ones
    (tmp_path / "d.csv").write_text("a,b\n" + "".join(f"{r['a']},{r['b']}\n" for r in rows))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    roots = ReadRoots.of(str(tmp_path))
    counted = localfiles.read_table(str(tmp_path / name), dataset_type, roots=roots)
    assert counted == TableFact(("a", "b"), 100, mean_chars=pytest.approx(mean))
    # too large to count: a head holding only short rows gives their mean (nothing after it is read)
    monkeypatch.setattr(localfiles, "MAX_COUNTED_BYTES", 100)
    monkeypatch.setattr(localfiles, "HEAD_BYTES", 200)
    assert localfiles.read_table(str(tmp_path / name), dataset_type, roots=roots) == TableFact(("a", "b"), None, mean_chars=short)


def _datasets(store: Path) -> list[tuple[str, str]]:
    if not store.exists():
        return []
    with sqlite3.connect(store) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return list(conn.execute("SELECT name, features FROM datasets")) if "datasets" in tables else []
