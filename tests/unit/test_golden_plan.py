"""Golden files pin what users see from `ftctl plan`: the plan file (JSON), the text and the
pull-request comment (markdown), for each kind of change the planner decides.

Each case folder under tests/golden/plan/ holds:

- `manifests/`: the manifests to plan (YAML, apiVersion ftctl/v1);
- `before/` (optional): manifests applied first (plan + apply, default policy), so the store starts
  with objects ftctl manages;
- `mutations.sql` (optional): SQL run on the store after that, before planning: edits made in the
  Studio's UI (drift), rows the Studio created itself (unmanaged rows);
- `stale.sql` (optional): SQL run after planning; applying the plan must then be refused
  (`apply-error.txt` holds the expected message);
- `args.json`: the policy (`prune`, `max_deletions`) and `offline` (always true: no network); for a
  partial plan, `paths` (files to plan instead of `manifests/`), `targets`, `selectors`, and
  `replace` (the --target, -l and --replace flags);
- any data the manifests read (`data/`, `models/`), shared by `before/` and `manifests/`;
- the expected `plan.json`, `plan.txt` and `plan.md`.

The case folder is copied to a temporary folder, which becomes the working directory, and the store
is `state.db` in it: the plan's store URL and every path in it are relative, so the files are the
same on every machine. New rows get ids from a fixed seed. Regenerate with FTCTL_UPDATE_GOLDEN=1
(the comparison then rewrites the expected files and passes) and review the change as a diff: see
tests/README.md. The tests at the end pin what a user should see where earlier output was wrong or
confusing (drift said twice, a replacement called in place, long diffs cut off, and so on).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine import EngineError, execute_plan, make_plan
from reconciler.plan import Action, Consequence, Plan, Policy
from reconciler.selection import SelectArgs
from reconciler.store.write import StoreWriter
from reconciler.views.plan import render_plan

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plan"
STORE = "state.db"
SEED = "golden"
ENVIRON = {"FTCTL_ACTOR": "golden-test", "FTCTL_BACKEND": "fake", "FTCTL_COMMIT_SHA": "golden"}  # jobs are recorded, never started
FORMATS = {"json": "plan.json", "text": "plan.txt", "markdown": "plan.md"}
EXPECTED_FILES = (*FORMATS.values(), "apply-error.txt")
CASES = (
    "create", "update", "replace", "delete", "drift", "noop", "orphan-kept", "protection", "mass-deletion",
    "stale", "dedup", "unmanaged-clash", "waiting",
    # partial plans and --replace, on the demo (before/ is specs/demo, applied first)
    "subset-files", "subset-one-file", "target", "selector", "replace-forced",
)
SUBSET_CASES = ("subset-files", "subset-one-file", "target", "selector", "replace-forced")
STUDIO_CONFIG_ID = "5e1b9c2a-8d3f-4c61-9a0e-3f2d7b6c1a01"  # inserted by dedup/mutations.sql
STUDIO_DATASET_ID = "0b7e4a52-6c1d-4f3e-8a29-5d4c3b2a1f00"  # inserted by unmanaged-clash/mutations.sql
UPDATE = os.environ.get("FTCTL_UPDATE_GOLDEN") == "1"


@dataclasses.dataclass
class Outcome:
    plan: Plan
    rendered: dict[str, str]
    apply_error: str | None = None
    store_before_apply: dict[str, Any] | None = None
    store_after_apply: dict[str, Any] | None = None


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _plan(paths: list[str], policy: Policy, select: SelectArgs | None = None) -> Plan:
    report = make_plan(paths, store=STORE, policy=policy, offline=True, environ=ENVIRON, use_cache=False, seed=SEED,
                       select=select)
    errors = [d for d in report.validation.diagnostics if d.severity.is_error()]
    assert report.plan is not None, errors
    return report.plan


def _apply(plan: Plan) -> None:
    execute_plan(plan, store=STORE, lock_wait_s=0.0, environ=ENVIRON)


def _run_sql(name: str) -> None:
    if not Path(STORE).exists():
        StoreWriter(STORE).close()  # an empty Studio store, as the Studio leaves it on first start
    with sqlite3.connect(STORE) as conn:
        conn.executescript(Path(name).read_text(encoding="utf-8"))
    conn.close()


def dump_store() -> dict[str, Any]:
    """The Studio's tables and ftctl's records and applies (without timestamps), for comparison."""
    out: dict[str, Any] = {}
    with sqlite3.connect(STORE) as conn:
        conn.row_factory = sqlite3.Row
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            if table in ("ftctl_lock", "ftctl_journal", "ftctl_history"):
                continue
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
            for row in rows:
                for column in ("updated_at", "started_at", "finished_at", "created_at"):
                    row.pop(column, None)
            out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    conn.close()
    return out


def case_args(case: str) -> dict[str, Any]:
    return json.loads((GOLDEN / case / "args.json").read_text(encoding="utf-8"))


def policy_of(args: dict[str, Any]) -> Policy:
    return Policy(prune=bool(args.get("prune", False)), max_deletions=int(args.get("max_deletions", 5)))


def paths_of(args: dict[str, Any]) -> list[str]:
    return list(args.get("paths", ["manifests"]))


def select_of(args: dict[str, Any], *, replace: bool = True) -> SelectArgs:
    return SelectArgs(tuple(args.get("targets", ())), tuple(args.get("selectors", ())),
                      tuple(args.get("replace", ())) if replace else ())


def prepare(case: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """Copy the case's inputs (not its expected files) to `root/case`."""
    work = root / case
    shutil.copytree(GOLDEN / case, work, ignore=shutil.ignore_patterns(*EXPECTED_FILES, STORE + "*"))
    (work / "ftctl.toml").touch()  # the project root: data/ beside manifests/ is inside it
    args = case_args(case)
    assert args.get("offline") is True, "golden plans never touch the network"
    return work, args


def build_start(work: Path) -> None:
    """The starting store, in the working directory: `before/` applied, then `mutations.sql`."""
    if (work / "before").is_dir():
        first = _plan(["before"], Policy())
        assert not first.is_blocked(), first.blockers
        _apply(first)
    if (work / "mutations.sql").is_file():
        _run_sql("mutations.sql")


def run_case(case: str, root: Path) -> Outcome:
    work, args = prepare(case, root)
    with _cwd(work):
        build_start(work)
        plan = _plan(paths_of(args), policy_of(args), select_of(args))
        outcome = Outcome(plan, {fmt: render_plan(fmt, plan) for fmt in FORMATS})
        if (work / "stale.sql").is_file():
            _run_sql("stale.sql")
            outcome.store_before_apply = dump_store()
            with pytest.raises(EngineError) as info:
                _apply(plan)
            outcome.apply_error = str(info.value) + "\n"
            outcome.store_after_apply = dump_store()
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Each case planned once for the whole module (the tests below only read the results)."""
    root = tmp_path_factory.mktemp("golden-plan")
    return {case: run_case(case, root) for case in CASES}


def expected(case: str, name: str) -> str:
    return (GOLDEN / case / name).read_text(encoding="utf-8")


def expected_plan(case: str) -> Plan:
    return Plan.from_json(expected(case, "plan.json"))


def _compare(case: str, name: str, got: str) -> None:
    path = GOLDEN / case / name
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


def test_every_case_folder_is_listed() -> None:
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert folders == set(CASES), "add the case to CASES, or remove the folder"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("case", CASES)
def test_plan_matches_golden(outcomes: dict[str, Outcome], case: str, fmt: str) -> None:
    _compare(case, FORMATS[fmt], outcomes[case].rendered[fmt])


# --- what the expected files must say, whatever they were regenerated to ------------------------


def _change(plan: Plan, address: str) -> Any:
    found = [c for c in plan.changes if c.address == address]
    assert len(found) == 1, (address, [c.address for c in plan.changes])
    return found[0]


@pytest.mark.parametrize("case", CASES)
def test_outputs_are_portable(case: str) -> None:
    plan = expected_plan(case)
    assert plan.store == "sqlite+pysqlite:///" + STORE
    for name in FORMATS.values():
        text = expected(case, name)
        assert "/tmp/" not in text and str(GOLDEN.parents[2]) not in text, name
    for change in plan.changes:
        for op in change.ops:
            for column in ("location", "out_dir", "user_script"):
                value = op.values.get(column)
                assert not (isinstance(value, str) and os.path.isabs(value)), (change.address, column, value)


@pytest.mark.parametrize("case", CASES)
def test_plan_file_round_trips(case: str) -> None:
    text = expected(case, "plan.json")
    assert Plan.from_json(text).to_json() == text


@pytest.mark.parametrize("case", CASES)
def test_summary_counts_match_the_changes(case: str) -> None:
    plan = expected_plan(case)
    counts = plan.counts()
    waiting = sum(1 for c in plan.changes if c.waits_for)
    counts["create"] -= waiting  # a change that waits for a job's output is not created by this apply
    first = expected(case, "plan.txt").splitlines()[0]
    assert first.startswith(f"Plan for {STORE} (serial {plan.serial}): ")
    for word, action in (("to create", "create"), ("to update", "update"), ("to replace", "replace"),
                         ("to delete", "delete"), ("unchanged", "noop")):
        assert f" {counts[action]} {word}" in first, (word, first)
    assert (f", {waiting} waiting." in first) is bool(waiting)
    md = expected(case, "plan.md")
    assert f"plan digest `{plan.digest()}`" in md
    if not waiting:
        assert f"| {counts['create']} | {counts['update']} | {counts['replace']} | {counts['delete']} | {counts['noop']} |" in md


def test_create_inserts_every_object_with_references_resolved() -> None:
    plan = expected_plan("create")
    assert [c.action for c in plan.changes] == [Action.CREATE] * 5
    ids = {c.address: c.record.store_id for c in plan.changes if c.record}
    job = _change(plan, "FineTuningJob/tickets-lora").ops[0].values
    assert job["base_model_id"] == ids["Model/tiny"]
    assert job["dataset_id"] == ids["Dataset/tickets"]
    assert job["prompt_id"] == ids["Prompt/tickets-prompt"]
    assert json.loads(job["lora_config"])["r"] == 8
    config = _change(plan, "Config/lora-r8").ops[0].values
    assert config["model_family"] == "LlamaForCausalLM"  # from models/tiny/config.json
    dataset = _change(plan, "Dataset/tickets").ops[0].values
    assert dataset["location"] == "data/tickets.csv"  # relative to the project root (the cwd)
    assert json.loads(dataset["features"]) == ["instruction", "intent"]


def test_update_changes_only_the_edited_columns_in_place() -> None:
    plan = expected_plan("update")
    updates = [c for c in plan.changes if c.action is Action.UPDATE]
    assert {c.address for c in updates} == {"Dataset/tickets", "Prompt/tickets-prompt", "Config/lora-r8"}
    for change in updates:
        assert change.consequence is Consequence.IN_PLACE and not change.drift
        assert [op.op for op in change.ops] == ["update"]
        assert set(change.ops[0].values) == {f.path.split(".", 1)[1] for f in change.fields}
    assert not any(c.action is Action.REPLACE for c in plan.changes)


def test_replace_config_body_gives_a_new_row_and_a_new_adapter_version() -> None:
    plan = expected_plan("replace")
    config = _change(plan, "Config/lora-r8")
    assert config.action is Action.REPLACE
    assert [op.op for op in config.ops] == ["delete", "insert"]
    assert config.ops[0].row_id != config.ops[1].row_id
    assert any(f.path.startswith("configs.config.") and f.forces_replace for f in config.fields)
    for name in ("tickets-lora", "tickets-lora-b"):  # its lora config changed; its own resources changed
        job = _change(plan, f"FineTuningJob/{name}")
        assert job.action is Action.REPLACE and job.consequence is Consequence.NEW_ADAPTER_VERSION
        assert job.record is not None and job.record.generation == 2
        # Generation 1's row is kept (a re-run keeps the previous training's row, f816e18); it
        # registered no adapter, so it is renamed now and the new row takes the name.
        kept, inserted = job.ops
        assert (kept.op, inserted.op) == ("update", "insert") and kept.row_id != inserted.row_id
        assert kept.values == {"adapter_name": f"{inserted.values['adapter_name']}-g1"}
    assert [f.path for f in _change(plan, "FineTuningJob/tickets-lora-b").fields] == ["fine_tuning_jobs.num_memory"]


def test_delete_removes_orphans_users_first() -> None:
    plan = expected_plan("delete")
    deletions = [c.address for c in plan.changes if c.action is Action.DELETE]
    assert deletions == ["Prompt/tickets-prompt", "Config/lora-r8"]
    assert not plan.blockers
    for change in plan.changes:
        if change.action is Action.DELETE:
            assert change.record is None and [op.op for op in change.ops] == ["delete"]


def test_drift_is_shown_and_put_back() -> None:
    plan = expected_plan("drift")
    prompt = _change(plan, "Prompt/tickets-prompt")
    assert prompt.action is Action.UPDATE and prompt.drift
    assert [f.path for f in prompt.fields] == ["prompts.prompt_template"]
    config = _change(plan, "Config/lora-r8")
    assert config.action is Action.CREATE and config.drift  # its row was deleted in the Studio
    assert "drift" in expected("drift", "plan.txt")


def test_noop_has_no_changes() -> None:
    plan = expected_plan("noop")
    assert not plan.has_changes() and not plan.blockers
    assert all(c.action is Action.NOOP for c in plan.changes)
    assert expected("noop", "plan.txt").endswith("No changes. The store matches the manifests.\n")


def test_orphans_are_kept_without_prune() -> None:
    plan = expected_plan("orphan-kept")
    assert not plan.has_changes() and not plan.blockers
    assert "Not in the manifests (1; kept, `--prune` would delete them):\n  Config/lora-r8" in expected("orphan-kept", "plan.txt")


def test_protected_object_blocks_its_pruning() -> None:
    plan = expected_plan("protection")
    assert [(b.code, b.address) for b in plan.blockers] == [("PL-002", "Config/lora-r8")]
    assert "PL-002 Config/lora-r8" in expected("protection", "plan.txt")


def test_mass_deletion_is_blocked() -> None:
    plan = expected_plan("mass-deletion")
    deletions = [c for c in plan.changes if c.action is Action.DELETE]
    assert len(deletions) > plan.policy.max_deletions
    assert [b.code for b in plan.blockers] == ["PL-004"]


def test_dedup_shares_equal_config_rows() -> None:
    plan = expected_plan("dedup")
    first, twin, studio = (_change(plan, a) for a in ("Config/lora-a", "Config/lora-b", "Config/studio-lora"))
    assert first.action is Action.CREATE and [op.op for op in first.ops] == ["insert"]
    assert twin.consequence is Consequence.SHARED and not twin.ops
    assert twin.record is not None and first.record is not None
    assert twin.record.store_id == first.record.store_id
    assert studio.consequence is Consequence.SHARED and not studio.ops
    assert studio.record is not None and studio.record.store_id == STUDIO_CONFIG_ID
    assert "reuse an equal config row" in expected("dedup", "plan.txt")


def test_unmanaged_row_with_the_same_name_blocks() -> None:
    plan = expected_plan("unmanaged-clash")
    assert [(b.code, b.address) for b in plan.blockers] == [("PL-001", "Dataset/tickets")]
    assert STUDIO_DATASET_ID in plan.blockers[0].message  # names the row it clashes with


def test_evaluation_of_an_untrained_adapter_waits() -> None:
    plan = expected_plan("waiting")
    evaluation = _change(plan, "EvaluationJob/tickets-eval")
    assert evaluation.waits_for == ("FineTuningJob/tickets-lora",)
    assert evaluation.consequence is Consequence.WAIT and not evaluation.ops and evaluation.record is None
    assert evaluation not in plan.actionable()
    assert _change(plan, "FineTuningJob/tickets-lora").action is Action.CREATE


# --- applying ------------------------------------------------------------------------------------


def test_stale_plan_is_refused_and_the_store_left_alone(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["stale"]
    assert outcome.apply_error is not None
    _compare("stale", "apply-error.txt", outcome.apply_error)
    assert "the plan is stale" in outcome.apply_error
    assert "Dataset 'tickets' (datasets/" in outcome.apply_error
    assert outcome.store_after_apply == outcome.store_before_apply


APPLIED_CASES = [c for c in CASES if c not in ("stale", "protection", "mass-deletion", "unmanaged-clash")]


@pytest.mark.parametrize("case", APPLIED_CASES)
def test_apply_then_replan_is_empty(tmp_path: Path, case: str) -> None:
    """Convergence: after applying a case's plan, planning again finds nothing to do."""
    work, args = prepare(case, tmp_path)
    with _cwd(work):
        build_start(work)
        plan = _plan(paths_of(args), policy_of(args), select_of(args))
        assert not plan.is_blocked()
        _apply(plan)
        again = _plan(paths_of(args), policy_of(args), select_of(args, replace=False))
        assert [(c.address, c.action.value, c.reason) for c in again.actionable()] == []  # waiting ones still wait
        assert not again.blockers


# --- partial plans: what they did not read, they leave alone -------------------------------------

# Studio columns that reference another object's row: a partial plan must resolve them, never blank them.
REFERENCE_COLUMNS = {
    "fine_tuning_jobs": ("base_model_id", "dataset_id", "prompt_id"),
    "prompts": ("dataset_id",),
    "evaluation_jobs": ("base_model_id", "dataset_id", "prompt_id"),
}


def _studio_rows() -> dict[tuple[str, str], str]:
    """(table, id) -> the row as JSON, for every row of the Studio's tables."""
    out = {}
    with sqlite3.connect(STORE) as conn:
        conn.row_factory = sqlite3.Row
        for table in ("datasets", "models", "prompts", "adapters", "configs", "fine_tuning_jobs", "evaluation_jobs"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                out[(table, str(row["id"]))] = json.dumps(dict(row), sort_keys=True)
    conn.close()
    return out


def _owned_rows() -> dict[str, list[tuple[str, str]]]:
    """Kind/name -> the (table, id) of the Studio rows ftctl records for it."""
    with sqlite3.connect(STORE) as conn:
        rows = conn.execute("SELECT kind, name, store_table, row_ids FROM ftctl_objects").fetchall()
    conn.close()
    return {f"{k}/{n}": [(t, rid) for rid in json.loads(ids)] for k, n, t, ids in rows if t}


@pytest.mark.parametrize("case", [c for c in SUBSET_CASES if c != "replace-forced"])
def test_a_partial_plan_says_so_and_deletes_nothing(case: str) -> None:
    plan = expected_plan(case)
    assert plan.partial is not None
    assert "Partial plan: only " in expected(case, "plan.txt").splitlines()[1]
    assert "**Partial plan: only " in expected(case, "plan.md")
    assert not [c for c in plan.changes if c.action is Action.DELETE or "--prune" in c.reason]
    assert not [op for c in plan.changes for op in c.ops if op.op == "delete" and c.action is not Action.REPLACE]


@pytest.mark.parametrize("case", SUBSET_CASES)
def test_applying_a_subset_keeps_the_rows_outside_it_and_every_reference(tmp_path: Path, case: str) -> None:
    """The rows of objects the plan does not cover stay byte for byte; rows it writes reference the
    same objects as before (a new row of a replaced object aside), never NULL or ''. A kept earlier
    generation of a training (history: no record holds it any more) references what it ran with,
    which may be a row the plan replaced."""
    work, args = prepare(case, tmp_path)
    with _cwd(work):
        build_start(work)
        before, owned = _studio_rows(), _owned_rows()
        plan = _plan(paths_of(args), policy_of(args), select_of(args))
        covered = {c.address for c in plan.changes}
        _apply(plan)
        after = _studio_rows()
        history = {key for keys in owned.values() for key in keys} - {key for keys in _owned_rows().values() for key in keys}
        outside = [key for address, keys in owned.items() if address not in covered for key in keys]
        assert outside or case in ("selector", "replace-forced"), "a subset case leaves some objects out"
        assert "Dataset/other-tickets" not in covered  # the selector case's object of another team
        assert {k: after.get(k) for k in outside} == {k: before[k] for k in outside}
        replaced = {before_id for (t, before_id) in before if (t, before_id) not in after}
        for (table, row_id), text in after.items():
            for column in REFERENCE_COLUMNS.get(table, ()):
                value = json.loads(text)[column]
                assert value not in (None, ""), (table, column, text)
                assert value not in replaced or (table, row_id) in history, (table, column)


def test_replace_runs_the_job_again_and_writes_the_row_anew() -> None:
    plan = expected_plan("replace-forced")
    assert plan.partial is None and plan.replace == ("FineTuningJob/demo-ticketing-lora", "Prompt/demo-ticketing")
    job, prompt = _change(plan, "FineTuningJob/demo-ticketing-lora"), _change(plan, "Prompt/demo-ticketing")
    assert job.action is Action.REPLACE and job.record is not None and job.record.generation == 2
    assert [launch.kind for launch in job.launches] == ["train"]
    assert prompt.action is Action.REPLACE and [op.op for op in prompt.ops] == ["delete", "insert"]


# --- known problems: what a user should see, and does not yet (strict: a fix makes them XPASS) ---


def _head(outcome: Outcome, address: str, fmt: str = "text") -> str:
    marker = f" {address}: " if fmt == "text" else f"**{address}**: "
    found = [line for line in outcome.rendered[fmt].splitlines() if marker in line]
    assert len(found) == 1, (address, found)
    return found[0]


def test_drift_is_said_once(outcomes: dict[str, Outcome]) -> None:
    for fmt in ("text", "markdown"):
        for address in ("Config/lora-r8", "Prompt/tickets-prompt"):
            head = _head(outcomes["drift"], address, fmt)
            assert head.count("drift") == 1, head


def test_a_replacement_is_not_called_in_place(outcomes: dict[str, Outcome]) -> None:
    change = _change(outcomes["replace"].plan, "Config/lora-r8")
    assert change.action is Action.REPLACE
    assert change.consequence is not Consequence.IN_PLACE
    assert "in place" not in _head(outcomes["replace"], "Config/lora-r8")
    assert "in place" not in _head(outcomes["replace"], "Config/lora-r8", "markdown")


def test_a_long_value_diff_shows_what_changed(outcomes: dict[str, Outcome]) -> None:
    text = outcomes["replace"].rendered["text"]
    for path in ("configs.config.target_modules", "fine_tuning_jobs.lora_config.target_modules"):
        line = next(line for line in text.splitlines() if line.strip().startswith(path + ":"))
        before, _, after = line.partition(": ")[2].removesuffix("  # forces replacement").partition(" -> ")
        assert before == "null" and after.startswith("["), line
    assert "target_modules" in outcomes["replace"].rendered["markdown"]


def test_a_job_rerun_for_its_input_names_the_input(outcomes: dict[str, Outcome]) -> None:
    change = _change(outcomes["replace"].plan, "FineTuningJob/tickets-lora")
    assert "the manifest changed" not in change.reason
    assert "Config/lora-r8" in change.reason
    # the job whose own manifest changed still says so
    assert _change(outcomes["replace"].plan, "FineTuningJob/tickets-lora-b").reason == "the manifest changed"


def test_kept_orphans_are_listed_and_not_called_in_sync(outcomes: dict[str, Outcome]) -> None:
    for fmt in ("text", "markdown"):
        shown = outcomes["orphan-kept"].rendered[fmt]
        assert "Config/lora-r8" in shown, fmt
        assert "the store matches the manifests" not in shown.lower(), fmt


def test_markdown_counts_waiting_changes_like_the_text(outcomes: dict[str, Outcome]) -> None:
    md = outcomes["waiting"].rendered["markdown"]
    assert "| 5 | 0 | 0 | 0 | 0 |" in md or "| 5 | 0 | 0 | 0 | 0 | 1 |" in md
    assert "waiting" in md.split("<details>")[0]
