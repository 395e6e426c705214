"""The plan file: `Plan.from_json(p.to_json()) == p`, and anything else is refused cleanly.

`ftctl plan -o FILE` writes a plan and `ftctl apply FILE` applies exactly it, so the JSON form must
carry every field of every value losslessly. Hypothesis generates plans with every Action and
Consequence, field diffs whose values are any JSON value (JSON has no tuples: a tuple would come
back as a list, so the planner only ever puts JSON-native values there), row operations, records,
blockers and policies; plans made by the real planner round-trip too. A file that is not a plan of
this format version raises `PlanFormatError` (the CLI prints it as one line), never anything else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.engine import execute_plan, make_plan
from reconciler.plan import (
    FORMAT_VERSION,
    Action,
    Blocker,
    Change,
    Choice,
    Comparison,
    Consequence,
    CostEstimate,
    FieldDiff,
    JobEstimate,
    Launch,
    ObservedJob,
    Plan,
    PlanFormatError,
    Policy,
    Record,
    Reuse,
    RowOp,
    Selection,
)
from reconciler.runtime import JobState

GOLDEN_PLAN = Path(__file__).resolve().parents[1] / "golden" / "plan"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ----------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=20)
short = st.text(max_size=30)
ids = st.uuids().map(str) | st.text(min_size=1, max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)  # NaN and Infinity are not JSON
    | short
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short, inner, max_size=4),
    max_leaves=12,
)
rows = st.dictionaries(st.text(min_size=1, max_size=15), json_values, max_size=6)

field_diffs = st.builds(
    FieldDiff, path=short, before=json_values, after=json_values, forces_replace=st.booleans(), sensitive=st.booleans()
)
row_ops = st.builds(RowOp, table=names, op=st.sampled_from(["insert", "update", "delete"]), row_id=ids, values=rows)
records = st.builds(
    Record,
    store_table=short,
    store_id=ids,
    row_ids=st.lists(ids, max_size=3).map(tuple),
    spec_fingerprint=short,
    row_fingerprint=short,
    generation=st.integers(min_value=0, max_value=10**6),
    origin=st.sampled_from(["created", "shared", "imported"]) | short,
    protected=st.booleans(),
    spec=st.none() | rows,
    backend=st.sampled_from(["", "local", "cml"]),
)
launches = st.builds(
    Launch, job_name=short, kind=st.sampled_from(["train", "evaluate", "export"]),
    attempt=st.integers(min_value=1, max_value=5), input=rows, row=short, backend=st.sampled_from(["local", "cml"]),
)
finite = st.floats(allow_nan=False, allow_infinity=False)
counts = st.none() | st.integers(min_value=0, max_value=10**6)
observed_jobs = st.builds(
    ObservedJob, job_name=short, state=st.sampled_from(list(JobState)), attempt=st.integers(min_value=0, max_value=9),
    step=counts, total_steps=counts, metrics=st.dictionaries(short, finite, max_size=3),
    error_class=st.sampled_from(["", "transient", "killed", "data"]), summary=short,
)
reuses = st.builds(
    Reuse, job_name=short, generation=st.integers(min_value=0, max_value=10**6), row=short, product=short,
    product_name=short, at=st.floats(min_value=0, max_value=2e9), commit=short, reuse_key=short,
)
choices = st.builds(
    Choice, evaluation=names, metric=names, mode=st.sampled_from(["max", "min"]), adapter=short,
    scores=st.dictionaries(short, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    pending=st.lists(short, max_size=2).map(tuple),
)
changes = st.builds(
    Change,
    kind=names,
    name=names,
    action=st.sampled_from(list(Action)),
    reason=short,
    consequence=st.sampled_from(list(Consequence)),
    wave=st.integers(min_value=0, max_value=1000),
    drift=st.booleans(),
    fields=st.lists(field_diffs, max_size=4).map(tuple),
    ops=st.lists(row_ops, max_size=3).map(tuple),
    record=st.none() | records,
    waits_for=st.lists(names, max_size=2).map(tuple),
    launches=st.lists(launches, max_size=2).map(tuple),
    jobs=st.lists(observed_jobs, max_size=3).map(tuple),
    adopts=st.lists(ids, max_size=2).map(tuple),
    orphan=st.booleans(),
    reuses=st.lists(reuses, max_size=2).map(tuple),
    chosen=st.none() | choices,
)
blockers = st.builds(Blocker, address=short, code=st.from_regex(r"(PL|PO)-00[1-4]", fullmatch=True), message=short,
                     policy_key=st.just("") | short, file=st.just("") | short, line=st.integers(min_value=0, max_value=10**6))
finite = st.floats(allow_nan=False, allow_infinity=False)
job_estimates = st.builds(JobEstimate, address=short, job=st.sampled_from(["train", "evaluate"]), device=names,
                          devices=st.integers(min_value=1, max_value=1024), tokens=st.integers(min_value=0, max_value=2**62),
                          tokens_per_second=finite, hours=finite, device_hours=finite, cost=finite, basis=short,
                          later=st.booleans(), known=st.booleans())
estimates = st.builds(CostEstimate, jobs=st.lists(job_estimates, max_size=3).map(tuple), gpu_hours=finite, cpu_hours=finite,
                      cost=finite, currency=names)
policies = st.builds(Policy, prune=st.booleans(), max_deletions=st.integers(min_value=0, max_value=10**6))
PLAN_FIELDS = {
    "store": short,
    "serial": st.integers(min_value=0, max_value=2**53),
    "read": st.dictionaries(short, short, max_size=5),
    "changes": st.lists(changes, max_size=5).map(tuple),
    "blockers": st.lists(blockers, max_size=3).map(tuple),
    "policy": policies,
    "labels": st.dictionaries(st.uuids().map(str), short, max_size=3),
    "store_exists": st.booleans(),
    "partial": st.none() | st.builds(Selection, files=st.lists(short, max_size=2).map(tuple),
                                     targets=st.lists(short, max_size=2).map(tuple), selectors=st.lists(short, max_size=2).map(tuple)),
    "replace": st.lists(short, max_size=2).map(tuple),
    "store_id": st.just("") | st.uuids().map(str),
    "evaluations": st.lists(st.builds(Comparison, evaluation=names, metric=names, base_label=short,
                                      base=st.floats(allow_nan=False, allow_infinity=False), adapter_label=short,
                                      adapter=st.floats(allow_nan=False, allow_infinity=False)), max_size=3).map(tuple),
    "estimate": st.none() | estimates,
}
plans = st.builds(Plan, **PLAN_FIELDS)


def test_the_strategies_cover_every_field() -> None:
    """A field added to a plan value must be added here too (and to `Plan.from_dict`)."""
    assert {f.name for f in dataclasses.fields(Plan)} == set(PLAN_FIELDS) | {"format_version"}
    covered = {
        Change: {"kind", "name", "action", "reason", "consequence", "wave", "drift", "fields", "ops", "record", "waits_for",
                 "launches", "jobs", "adopts", "orphan", "reuses", "chosen"},
        Choice: {"evaluation", "metric", "mode", "adapter", "scores", "pending"},
        Reuse: {"job_name", "generation", "row", "product", "product_name", "at", "commit", "reuse_key"},
        ObservedJob: {"job_name", "state", "attempt", "step", "total_steps", "metrics", "error_class", "summary"},
        Launch: {"job_name", "kind", "attempt", "input", "row", "backend"},
        FieldDiff: {"path", "before", "after", "forces_replace", "sensitive"},
        RowOp: {"table", "op", "row_id", "values"},
        Record: {"store_table", "store_id", "row_ids", "spec_fingerprint", "row_fingerprint", "generation", "origin",
                 "protected", "spec", "backend"},
        Blocker: {"address", "code", "message", "policy_key", "file", "line"},
        JobEstimate: {"address", "job", "device", "devices", "tokens", "tokens_per_second", "hours", "device_hours", "cost",
                      "basis", "later", "known"},
        CostEstimate: {"jobs", "gpu_hours", "cpu_hours", "cost", "currency"},
        Policy: {"prune", "max_deletions"},
        Selection: {"files", "targets", "selectors"},
        Comparison: {"evaluation", "metric", "base_label", "base", "adapter_label", "adapter"},
    }
    for cls, names_ in covered.items():
        assert {f.name for f in dataclasses.fields(cls)} == names_, cls.__name__


# --- round trips ---------------------------------------------------------------------------------


@SETTINGS
@given(plans)
def test_generated_plans_round_trip(plan: Plan) -> None:
    text = plan.to_json()
    again = Plan.from_json(text)
    assert again == plan
    assert again.to_json() == text
    assert again.digest() == plan.digest()
    json.loads(text)  # and it is strict JSON (no NaN/Infinity)


@SETTINGS
@given(field_diffs)
def test_field_diff_values_keep_their_json_types(diff: FieldDiff) -> None:
    plan = Plan(store="s", serial=0, read={}, changes=(Change("Config", "c", Action.UPDATE, "r", fields=(diff,)),))
    back = Plan.from_json(plan.to_json()).changes[0].fields[0]
    for got, want in ((back.before, diff.before), (back.after, diff.after)):
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
        assert type(got) is type(want)


def test_every_action_and_consequence_round_trips() -> None:
    changes_ = tuple(
        Change("Dataset", f"d{i}", action, "why", consequence, wave=i)
        for i, (action, consequence) in enumerate((a, c) for a in Action for c in Consequence)
    )
    plan = Plan(store="sqlite+pysqlite:///state.db", serial=3, read={"datasets/x": "ab"}, changes=changes_)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert all(isinstance(c.action, Action) and isinstance(c.consequence, Consequence) for c in again.changes)


def test_tuples_in_field_values_come_back_as_lists() -> None:
    """Why the strategies generate lists: JSON has no tuples (the planner must not put tuples there)."""
    plan = Plan(store="s", serial=0, read={}, changes=(Change("X", "x", Action.UPDATE, "r", fields=(FieldDiff("a.b", (1, 2), None),)),))
    assert Plan.from_json(plan.to_json()).changes[0].fields[0].before == [1, 2]


def _real_plans(tmp: Path) -> list[Plan]:
    """Plans from the real planner for two golden cases: one made on an empty store, one after apply."""
    out = []
    env = {"FTCTL_ACTOR": "roundtrip-test", "FTCTL_BACKEND": "fake"}
    for case, policy in (("create", Policy()), ("replace", Policy(prune=True, max_deletions=0))):
        work = tmp / case
        shutil.copytree(GOLDEN_PLAN / case, work, ignore=shutil.ignore_patterns("plan.*"))
        (work / "ftctl.toml").touch()  # the project root: data/ beside manifests/ is inside it
        old = os.getcwd()
        os.chdir(work)
        try:
            if (work / "before").is_dir():
                first = make_plan(["before"], store="state.db", policy=Policy(), offline=True, environ=env, use_cache=False)
                assert first.plan is not None
                execute_plan(first.plan, store="state.db", lock_wait_s=0, environ=env)
            report = make_plan(["manifests"], store="state.db", policy=policy, offline=True, environ=env, use_cache=False)
        finally:
            os.chdir(old)
        assert report.plan is not None
        out.append(report.plan)
    return out


def test_real_plans_round_trip(tmp_path: Path) -> None:
    made = _real_plans(tmp_path)
    assert made[1].read and any(c.record and c.record.generation == 2 for c in made[1].changes)
    for plan in made:
        assert plan.changes
        text = plan.to_json()
        assert Plan.from_json(text) == plan
        assert Plan.from_json(text).to_json() == text
        assert any(c.ops for c in plan.changes) and any(c.record for c in plan.changes)


# --- refusals ------------------------------------------------------------------------------------


def _valid_dict() -> dict[str, Any]:
    change = Change("Config", "c", Action.REPLACE, "why", Consequence.IN_PLACE, 1, True,
                    (FieldDiff("configs.config", "{}", '{"r": 8}', True),), (RowOp("configs", "insert", "id1", {"id": "id1"}),),
                    Record("configs", "id1", ("id1",), "s", "r", 2, "created"), ("FineTuningJob/j",),
                    jobs=(ObservedJob("ftctl-train-j-1", JobState.RUNNING, 1, 3, 8, {"loss": 0.5}, "", "running: step 3/8"),))
    plan = Plan(store="s", serial=1, read={"configs/id1": "f"}, changes=(change,), blockers=(Blocker("*", "PL-004", "m"),),
                labels={"id1": "Config/c"})
    return json.loads(plan.to_json())


@pytest.mark.parametrize("text", ["", "not json", "{", "{'format_version': 1}", "\x00", "format_version: 1"])
def test_non_json_is_refused(text: str) -> None:
    with pytest.raises(PlanFormatError, match="not a plan file"):
        Plan.from_json(text)


@pytest.mark.parametrize("text", ["[]", "null", "3", '"plan"', "{}", '{"changes": []}'])
def test_json_that_is_not_a_plan_is_refused(text: str) -> None:
    with pytest.raises(PlanFormatError, match="not a plan file"):
        Plan.from_json(text)


@pytest.mark.parametrize("version", [0, FORMAT_VERSION - 1, FORMAT_VERSION + 1, 99, "1", None, [1]])
def test_another_format_version_is_refused(version: Any) -> None:
    data = {**_valid_dict(), "format_version": version}
    with pytest.raises(PlanFormatError, match="format_version"):
        Plan.from_json(json.dumps(data))


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()
MALFORMED = [
    (("store",), _DELETE),
    (("changes",), _DELETE),
    (("changes",), None),
    (("changes",), [5]),
    (("changes", 0, "action"), "explode"),
    (("changes", 0, "consequence"), "maybe"),
    (("changes", 0, "consequence"), "in place"),  # the words of format 1, not a code
    (("changes", 0, "jobs"), _DELETE),
    (("changes", 0, "jobs", 0, "state"), "exploded"),
    (("changes", 0, "jobs", 0, "step"), "three"),
    (("changes", 0, "orphan"), _DELETE),
    (("changes", 0, "kind"), _DELETE),
    (("changes", 0, "fields", 0, "colour"), "red"),
    (("changes", 0, "ops", 0), {"table": "configs"}),
    (("changes", 0, "record", "row_ids"), _DELETE),
    (("changes", 0, "record"), [1, 2]),
    (("changes", 0, "wave"), "first"),
    (("serial",), "one"),
    (("serial",), {"n": 1}),
    (("read",), 5),
    (("blockers", 0), {"code": "PL-004"}),
    (("policy",), {"prune": True, "max_deletes": 1}),
    (("labels",), 7),
]


def _case_id(case: Any) -> str:
    path = case.values[0] if hasattr(case, "values") else case[0]
    return ".".join(map(str, path))


@pytest.mark.parametrize(("path", "value"), MALFORMED, ids=[_case_id(c) for c in MALFORMED])
def test_malformed_plan_is_refused(path: tuple[Any, ...], value: Any) -> None:
    data = _set(_valid_dict(), path, value)
    with pytest.raises(PlanFormatError, match="malformed plan file"):
        Plan.from_json(json.dumps(data))


def test_the_valid_dict_is_valid() -> None:
    assert Plan.from_json(json.dumps(_valid_dict())).to_json() == json.dumps(_valid_dict(), indent=1, sort_keys=True) + "\n"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out += _paths(inner, (*prefix, index))
    return out


@SETTINGS
@given(st.data())
def test_any_json_value_in_place_of_a_scalar_gives_a_plan_or_a_plan_format_error(data: st.DataObject) -> None:
    """Whatever JSON value replaces whatever scalar of a plan file, reading it never fails otherwise."""
    doc = _valid_dict()
    path = data.draw(st.sampled_from([p for p in _paths(doc) if not isinstance(_get(doc, p), dict | list)]))
    text = json.dumps(_set(doc, path, data.draw(json_values)))
    with contextlib.suppress(PlanFormatError):
        Plan.from_json(text)


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


NASTY = [None, True, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}]


def test_any_edit_of_any_part_is_refused_with_a_plan_format_error() -> None:
    """Every part of a plan file (objects and lists too) replaced by each of a few odd JSON values:
    refused with a PlanFormatError, never another exception, unless what is read is the same plan
    (`1` for `1.0`); an edit that changes the content never gets through."""
    original = Plan.from_json(json.dumps(_valid_dict()))
    escaped = []
    for path in _paths(_valid_dict()):
        for value in NASTY:
            try:
                read = Plan.from_json(json.dumps(_set(_valid_dict(), path, value)))
            except PlanFormatError:
                continue
            except Exception as exc:
                escaped.append(f"{'.'.join(map(str, path))} = {value!r}: {type(exc).__name__}: {exc}")
                continue
            if read != original:
                escaped.append(f"{'.'.join(map(str, path))} = {value!r}: accepted a changed plan")
    assert escaped == []


@pytest.mark.parametrize("text", [
    json.dumps({**_valid_dict(), "serial": math.inf}),
    json.dumps(_set(_valid_dict(), ("changes", 0, "wave"), -math.inf)),
    "[" * 100_000,
], ids=["serial-infinity", "wave-infinity", "deep-nesting"])
def test_non_finite_numbers_and_deep_nesting_are_refused(text: str) -> None:
    with pytest.raises(PlanFormatError):
        Plan.from_json(text)
