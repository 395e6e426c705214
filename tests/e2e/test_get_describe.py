"""`ftctl get` and `ftctl describe` through the real CLI, on a store where the demo was applied.

One store for the module: the demo applied on the fake backend, its training finished (train_loss,
an adapter registered), its evaluations launched and scored, and two Studio rows ftctl does not
manage, each holding a planted secret (a token in a config body, credentials in a dataset's URL).
Every test only reads it, and checks that the store's bytes did not change. Covered: each kind by
its aliases, every format and -o, sync state with and without manifests, unmanaged rows (-A), a
describe of each kind's sections (jobs, metrics, the adapter a job produced, events), unknown kinds
and names (did you mean), a missing store (named, not created), a read-only store, a snapshot file as
--store, and that no planted secret reaches any output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import DEMO, apply, ftctl, jobs_env, launch_logs, make_demo, show, write_result

STORE = ".app/state.db"
TOKEN = "hf_" + "Q" * 34
PASSWORD = "s3cr3t-pw-4711"
TRAIN = "FineTuningJob/demo-ticketing-lora"
EVAL = "EvaluationJob/demo-base-vs-lora"


class Demo:
    def __init__(self, root: Path) -> None:
        self.root, self.jobs = root, root / "jobs"

    @property
    def db(self) -> Path:
        return self.root / STORE

    def run(self, *args: str, expect: int = 0) -> str:
        done = ftctl(self.root, *args, env=jobs_env(self.jobs), timeout=60)
        assert done.returncode == expect, show(done)
        assert "Traceback" not in done.stderr, show(done)
        return done.stdout if expect == 0 else done.stderr

    def apply(self) -> None:
        done = apply(self.root, DEMO, env=jobs_env(self.jobs))
        assert done.returncode == 0, show(done)

    def job(self, prefix: str) -> list[str]:
        return sorted(name for name in launch_logs(self.jobs) if name.startswith(prefix))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    d = Demo(make_demo(tmp_path_factory.mktemp("get") / "project"))
    d.apply()
    [train] = d.job("ftctl-train-")
    write_result(d.jobs, train, metrics={"train_loss": 0.42}, artifacts={"adapter_dir": str(d.root / "out" / "adapter")})
    d.apply()  # registers the adapter
    d.apply()  # creates the evaluation rows, launches their jobs
    for job, score in zip(d.job("ftctl-eval-"), (0.04, 0.29)):
        write_result(d.jobs, job, metrics={"rougeL": score})
    conn = sqlite3.connect(d.db)
    with conn:  # rows the Studio wrote, each with a secret
        conn.execute("INSERT INTO configs (id, type, description, config) VALUES (?, ?, ?, ?)",
                     ("studio-cfg-1", "generation_config", "studio-made", json.dumps({"max_new_tokens": 8, "hub_token": TOKEN})))
        conn.execute("INSERT INTO datasets (id, type, name, location) VALUES (?, ?, ?, ?)",
                     ("studio-ds-1", "huggingface", "studio-data", f"https://alice:{PASSWORD}@example.com/data.csv"))
    conn.close()
    return d


def _digest(db: Path) -> str:
    """The store's file and its write-ahead log (the -shm index changes with every reader)."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.is_file())).hexdigest()


@pytest.fixture
def unchanged(demo: Demo) -> Iterator[Demo]:
    """The demo, checked after the test: get and describe never write the store."""
    before = _digest(demo.db)
    yield demo
    assert _digest(demo.db) == before, "a read-only command changed the store's bytes"


def _secretless(text: str) -> None:
    assert TOKEN not in text and PASSWORD not in text, text


@pytest.mark.parametrize(("kind", "shown"), [
    ("datasets", "demo-tickets"), ("ds", "demo-tickets"), ("Model", "tiny-llama"), ("prompts", "demo-ticketing"),
    ("cfg", "demo-lora"), ("adapters", "demo-ticketing-lora"), ("FTJOB", "demo-ticketing-lora"), ("jobs", "demo-ticketing-lora"),
    ("evals", "demo-base-vs-lora"), ("evaluationjobs", "demo-base-vs-lora"),
])
def test_get_lists_each_kind_by_its_aliases(unchanged: Demo, kind: str, shown: str) -> None:
    out = unchanged.run("get", kind)
    header, *rows = out.splitlines()
    assert header.split()[:6] == ["NAME", "SYNC", "HEALTH", "ID", "GEN", "AGE"], out
    assert any(r.split()[0] == shown for r in rows), out
    assert all(len(line) <= 100 for line in out.splitlines()), out


def test_get_shows_key_fields_job_states_and_metrics(unchanged: Demo) -> None:
    [job] = [line for line in unchanged.run("get", "ftjobs").splitlines() if line.startswith("demo-ticketing-lora")]
    assert "succeeded" in job and "tiny-llama" in job and "demo-tickets" in job and "train_loss 0.42" in job, job
    [evaluation] = unchanged.run("get", "evaljob").splitlines()[1:]
    assert "rougeL 0.04/0.29" in evaluation or "rougeL 0.29/0.04" in evaluation, evaluation
    [adapter] = unchanged.run("get", "adapter").splitlines()[1:]
    assert "tiny-llama" in adapter, adapter


def test_get_all_names_every_kind_and_fits_100_columns(unchanged: Demo) -> None:
    out = unchanged.run("get", "all")
    for address in ("Dataset/demo-tickets", "Model/tiny-llama", "Prompt/demo-ticketing", "Config/demo-lora",
                    "Adapter/demo-ticketing-lora", EVAL):
        assert address in out, out
    assert "FineTuningJob/demo-ticketing" in out, out  # cut to fit (…) where the row is too wide
    assert all(len(line) <= 100 for line in out.splitlines()), out
    assert "studio-data" not in out, "unmanaged rows only with -A"


def test_get_json_and_yaml_carry_the_same_items_and_o_writes_the_file(unchanged: Demo) -> None:
    as_json = json.loads(unchanged.run("get", "all", "--format", "json"))
    as_yaml = yaml.safe_load(unchanged.run("get", "all", "--format", "yaml"))
    assert as_json == as_yaml and as_json["kind"] == "List"
    by_address = {f"{i['kind']}/{i['name']}": i for i in as_json["items"]}
    train = by_address[TRAIN]
    assert train["managed"] and train["health"] == "succeeded" and train["sync"] == "-"
    assert list(train["metrics"].values()) == [{"train_loss": 0.42}]
    assert train["fields"] == {"BASE MODEL": "tiny-llama", "DATASET": "demo-tickets"}
    assert train["updated_at"].endswith("+00:00") and len(train["store_id"]) == 36
    out = unchanged.root / "out.json"
    assert unchanged.run("get", "all", "--format", "json", "-o", str(out)) == ""
    assert json.loads(out.read_text(encoding="utf-8")) == as_json


def test_get_with_manifests_computes_sync_as_status_does(unchanged: Demo) -> None:
    rows = json.loads(unchanged.run("get", "all", "-f", DEMO, "--offline", "--format", "json"))["items"]
    status = json.loads(ftctl(unchanged.root, "status", DEMO, "--offline", "--format", "json", env=jobs_env(unchanged.jobs)).stdout)
    assert {(r["kind"], r["name"], r["sync"], r["health"]) for r in rows if r["sync"] != "produced"} == \
        {(s["kind"], s["name"], s["sync"], s["health"]) for s in status["objects"]}
    assert ("Adapter", "demo-ticketing-lora", "produced") in {(r["kind"], r["name"], r["sync"]) for r in rows}


def test_get_all_flag_adds_the_rows_ftctl_does_not_manage_without_their_secrets(unchanged: Demo) -> None:
    out = unchanged.run("get", "ds", "-A")
    [row] = [line for line in out.splitlines() if line.startswith("studio-data")]
    assert "unmanaged" in row and "studio-d" in row, out
    for fmt in ("table", "json", "yaml"):
        _secretless(unchanged.run("get", "all", "-A", "--format", fmt))


def test_get_one_by_name(unchanged: Demo) -> None:
    [item] = json.loads(unchanged.run("get", "dataset", "demo-tickets", "--format", "json"))["items"]
    assert (item["kind"], item["name"], item["health"]) == ("Dataset", "demo-tickets", "healthy")
    [unmanaged] = json.loads(unchanged.run("get", "dataset", "studio-data", "--format", "json"))["items"]
    assert not unmanaged["managed"] and unmanaged["sync"] == "unmanaged"


def test_describe_a_job_shows_its_manifest_rows_jobs_metrics_adapter_and_events(unchanged: Demo) -> None:
    text = unchanged.run("describe", "ftjob/demo-ticketing-lora", "-f", DEMO, "--offline")
    [train] = unchanged.job("ftctl-train-")
    for part in ("Name:        demo-ticketing-lora", "Kind:        FineTuningJob", "Sync:        synced",
                 "Health:      succeeded", "Manifest:    specs/demo/pipeline.yaml", "  kind: FineTuningJob",
                 "  fine_tuning_jobs/", f"  {train}:", "metrics: train_loss 0.42", "Adapter/demo-ticketing-lora (fine_tuning_job_id)",
                 "Model/tiny-llama (base_model_id)", "Events:", " create "):
        assert part in text, f"{part!r} not in\n{text}"
    document = json.loads(unchanged.run("describe", TRAIN, "--format", "json"))
    assert document["manifest"] is None and document["sync"] == "-"
    assert [(j["job"], j["state"], j["attempt"], j["metrics"]) for j in document["jobs"]] == [(train, "succeeded", 1, {"train_loss": 0.42})]
    assert document["jobs"][0]["external_id"].endswith(train)
    assert document["events"][0]["action"] == "create"
    assert {e["serial"] for e in document["events"]} >= {1} and all(e["actor"] for e in document["events"])
    assert yaml.safe_load(unchanged.run("describe", TRAIN, "--format", "yaml")) == document


def test_describe_each_kind(unchanged: Demo) -> None:
    evaluation = json.loads(unchanged.run("describe", EVAL, "--format", "json"))
    assert len(evaluation["rows"]) == 2 and len(evaluation["jobs"]) == 2
    assert sorted(j["metrics"]["rougeL"] for j in evaluation["jobs"]) == [0.04, 0.29]
    adapter = json.loads(unchanged.run("describe", "ad/demo-ticketing-lora", "--format", "json"))
    assert f"{TRAIN} (fine_tuning_job_id)" in adapter["uses"] and f"{EVAL} (adapter_id)" in adapter["used_by"]
    dataset = unchanged.run("describe", "Dataset/demo-tickets")
    assert "Used by:" in dataset and "Prompt/demo-ticketing (dataset_id)" in dataset, dataset
    for address in ("Model/tiny-llama", "Prompt/demo-ticketing", "Config/demo-lora"):
        assert json.loads(unchanged.run("describe", address, "--format", "json"))["rows"], address


def test_describe_never_shows_a_secret_a_studio_row_holds(unchanged: Demo) -> None:
    for address in ("Config/studio-made", "Dataset/studio-data"):
        for fmt in ("table", "json", "yaml"):
            out = unchanged.run("describe", address, "--format", fmt)
            _secretless(out)
            assert "Managed:     no" in out or "false" in out, out
    assert "(sensitive)" in unchanged.run("describe", "cfg/studio-made")


def test_unknown_kind_or_name_is_one_line_with_a_hint(unchanged: Demo) -> None:
    for args, hint in ((("get", "datset"), "did you mean dataset?"), (("get", "ftjbo"), "did you mean ftjob?"),
                       (("describe", "Dataset/demo-ticket"), "did you mean demo-tickets?"),
                       (("describe", "Datasett/demo-tickets"), "did you mean dataset"),
                       (("get", "prompt", "demo-tiketing"), "did you mean demo-ticketing?"),
                       (("describe", "demo-tickets"), "want Kind/name")):
        err = unchanged.run(*args, expect=1)
        assert hint in err and len(err.strip().splitlines()) == 1, err


def test_a_missing_store_is_named_and_not_created(unchanged: Demo) -> None:
    for args in (("get", "all"), ("describe", TRAIN)):
        err = unchanged.run(*args, "--store", "state.bd", expect=1)
        assert "no store at state.bd" in err, err
    assert not (unchanged.root / "state.bd").exists()


def test_a_read_only_store_reads(unchanged: Demo, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(unchanged.db, folder / "state.db")
    (folder / "state.db").chmod(stat.S_IRUSR)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        items = json.loads(unchanged.run("get", "all", "--store", str(folder / "state.db"), "--format", "json"))["items"]
        assert TRAIN in {f"{i['kind']}/{i['name']}" for i in items}
        assert "Events:" in unchanged.run("describe", TRAIN, "--store", str(folder / "state.db"))
        assert sorted(os.listdir(folder)) == ["state.db"]
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_snapshot_file_reads_as_the_store(unchanged: Demo) -> None:
    snapshot = unchanged.root / "snapshot.json"
    unchanged.run("state", "pull", "-o", str(snapshot))
    before = _digest(unchanged.db)
    live = json.loads(unchanged.run("get", "all", "-A", "--format", "json"))
    pulled = json.loads(unchanged.run("get", "all", "-A", "--store", str(snapshot), "--format", "json"))
    assert pulled == live
    described = json.loads(unchanged.run("describe", TRAIN, "--store", str(snapshot), "--format", "json"))
    assert described["events"] == json.loads(unchanged.run("describe", TRAIN, "--format", "json"))["events"]
    _secretless(unchanged.run("describe", "Config/studio-made", "--store", str(snapshot)))
    assert _digest(unchanged.db) == before
