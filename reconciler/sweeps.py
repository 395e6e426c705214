"""Sweeps: a FineTuningJob's `matrix:` expanded into trials, and evaluations over a sweep's trials.

Pure. `expand` takes the loaded manifests and returns them with each FineTuningJob that has a
`matrix` replaced by its trials, one FineTuningJob per combination of values, and each EvaluationJob
combination that names a `sweep` replaced by one combination per trial. From there on a trial is an
object like any other: rules, plan, apply, status, logs and cancel see `FineTuningJob/<trial>`, the
store holds one job row and one adapter per trial. The engine calls it where loaded manifests become
the rules' and the planner's input (`engine._validate`), so every command sees the same trials.

A trial's name is `<job>-<slug>`: each matrix key's short name (`ABBREVIATIONS`, else the initials
of its words) with its value (`lr0p01-r8`, `data-tickets-v2`), in the matrix's key order. It depends
only on the trial's own values, so adding a value names one new trial and renames none. Two values
that slug alike are an error (SW-004), never silently numbered; a name longer than `MAX_NAME` keeps
its start and ends with a digest of its values. A trial's diagnostics point at its values in the
matrix (`MappedLocation`); one that every trial shares is reported once, for the sweep (`fold`).

Must not read files, the store or the clock.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath, Location
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, EvaluationJob, FineTuningJob, IdRef
from reconciler.models.base import STORE_ID_ANNOTATION
from reconciler.models.jobs import Combination, FineTuningJobSpec

MAX_TRIALS = 1000  # far above a useful grid; 10 x 10 x 10 x 10 is a slip of the keyboard
MAX_NAME = 100  # a trial name past this keeps its start and ends with a digest of its values
# Settings no trial may vary: the job's identity, its output folder and the run it records.
FIXED = frozenset({"adapter_name", "out_dir", "cml_job_id", "adapter_id", "matrix"})
CONFIG_FIELDS = frozenset({"lora_config", "bnb_config", "adapter_bnb_config", "training_arguments", "axolotl_config", "user_config"})
ABBREVIATIONS = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs", "lora_alpha": "alpha",
    "lora_dropout": "dropout", "per_device_train_batch_size": "bs", "gradient_accumulation_steps": "gas",
    "weight_decay": "wd", "warmup_ratio": "warmup", "warmup_steps": "warmup", "max_steps": "steps",
    "dataset_fraction": "frac", "train_test_split": "split", "base_model": "model", "dataset": "data",
    "prompt": "prompt", "seed": "seed", "r": "r",
}


@dataclass(frozen=True)
class MappedLocation(Location):
    """A derived object's location: field paths it has that its document spells elsewhere (a trial's
    varied setting, an expanded evaluation combination) point where the document spells them."""

    remap: tuple[tuple[FieldPath, FieldPath], ...] = ()  # (derived prefix, document prefix), longest first

    def at(self, *path: str | int) -> Location:
        for derived, written in self.remap:
            if path[: len(derived)] == derived:
                return Location(self.file, self.doc, written + path[len(derived):])
        return Location(self.file, self.doc, path)


@dataclass
class Expansion:
    manifests: list[Manifest]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    trials: dict[str, tuple[Manifest, ...]] = field(default_factory=dict)  # sweep job name -> its trials

    def sweep_of(self) -> dict[str, str]:
        """Trial address -> its sweep's address."""
        return {t.address: f"FineTuningJob/{job}" for job, trials in self.trials.items() for t in trials}


def expand(manifests: Iterable[Manifest]) -> Expansion:
    """The manifests with sweeps expanded into trials and evaluations over sweeps into combinations."""
    manifests = list(manifests)
    configs = {m.name: m for m in manifests if isinstance(m.resource, Config)}
    out = Expansion([])
    for m in manifests:
        if isinstance(m.resource, FineTuningJob) and m.resource.spec.matrix is not None:
            trials, diags = _trials(m, configs)
            out.trials[m.name] = tuple(trials)
            out.manifests += trials or [_without_matrix(m)]  # a sweep that failed is still checked as one job
            out.diagnostics += diags
        else:
            out.manifests.append(m)
    jobs = {m.name: m for m in manifests if isinstance(m.resource, FineTuningJob)}
    for index, m in enumerate(out.manifests):
        if isinstance(m.resource, EvaluationJob) and any(c.sweep is not None for c in m.resource.spec.combinations):
            out.manifests[index], diags = _over_sweeps(m, out.trials, jobs)
            out.diagnostics += diags
    return out


def _without_matrix(m: Manifest) -> Manifest:
    job = m.resource
    assert isinstance(job, FineTuningJob)
    return replace(m, resource=job.model_copy(update={"spec": job.spec.model_copy(update={"matrix": None})}))


def fold(diagnostics: Iterable[Diagnostic], sweep_of: Mapping[str, str]) -> list[Diagnostic]:
    """A finding several trials share (one code, one place, one message: a setting outside the
    matrix, or a value some trials carry) once, for the sweep; a finding of one trial stays its own."""
    diagnostics = list(diagnostics)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, d in enumerate(diagnostics):
        if d.address in sweep_of and d.location is not None:
            groups.setdefault(_finding(d), []).append(index)
    dropped = {i for members in groups.values() for i in members[1:]}
    shared = {members[0] for members in groups.values() if len(members) > 1 or not _in_matrix(diagnostics[members[0]])}
    return [replace(d, address=sweep_of[d.address or ""]) if i in shared else d
            for i, d in enumerate(diagnostics) if i not in dropped]


def _finding(d: Diagnostic) -> tuple[Any, ...]:
    """What a trial's diagnostic says, whichever trial says it (its own name left out)."""
    loc = d.location
    assert loc is not None and d.address is not None
    return (d.code, loc.file, loc.doc, loc.path, d.summary.replace(d.address.partition("/")[2], "<trial>"))


def _in_matrix(d: Diagnostic) -> bool:
    return d.location is not None and d.location.path[:2] == ("spec", "matrix")


# -- trials --------------------------------------------------------------------------------------


def _trials(m: Manifest, configs: Mapping[str, Manifest]) -> tuple[list[Manifest], list[Diagnostic]]:
    job = m.resource
    assert isinstance(job, FineTuningJob) and job.spec.matrix is not None
    matrix = job.spec.matrix
    diags = [*_key_problems(m, matrix, configs), *_value_problems(m, matrix)]
    if STORE_ID_ANNOTATION in job.metadata.annotations:
        diags.append(make_diag("SW-009", location=m.at("metadata", "annotations", STORE_ID_ANNOTATION), address=m.address))
    count = 1
    for values in matrix.values():
        count *= len(values)
    if not matrix:
        diags.append(make_diag("SW-002", "matrix has no settings", location=m.at("spec", "matrix"), address=m.address))
    elif count > MAX_TRIALS:
        diags.append(make_diag("SW-008", f"matrix makes {count:,} trials; the limit is {MAX_TRIALS:,}",
                               location=m.at("spec", "matrix"), address=m.address))
    if diags:
        return [], diags
    names = trial_names(m.name, matrix)
    diags += _name_clashes(m, matrix, names)
    if diags:
        return [], diags
    base = job.model_dump(exclude_unset=True)
    base["spec"].pop("matrix", None)
    trials: list[Manifest] = []
    for picks in itertools.product(*(range(len(v)) for v in matrix.values())):
        trial, problem = _trial(m, base, picks, names[picks], configs)
        if problem is not None:
            diags.append(problem)
        elif trial is not None:
            trials.append(trial)
    return trials, diags


def _key_problems(m: Manifest, matrix: Mapping[str, Any], configs: Mapping[str, Manifest]) -> Iterable[Diagnostic]:
    spec = m.resource.spec
    for key in matrix:
        head, *rest = key.split(".")
        loc = m.at("spec", "matrix", key)
        if head in FIXED or head not in FineTuningJobSpec.model_fields or not all(rest) or (rest and not _nested(head)):
            yield make_diag("SW-001", f"matrix key {key!r} is not a setting a trial can vary", location=loc, address=m.address,
                            detail=f"fixed per sweep: {', '.join(sorted(FIXED))}" if head in FIXED else None)
        elif rest and head in CONFIG_FIELDS:
            source = getattr(spec, head)
            if isinstance(source, IdRef) or (isinstance(source, str) and not isinstance(_named_body(source, configs), dict)):
                yield make_diag("SW-007", f"{head} is {'a store config' if isinstance(source, IdRef) else repr(source)}: "
                                f"its body is not a mapping ftctl can vary", location=loc, address=m.address)


def _nested(head: str) -> bool:
    return head in CONFIG_FIELDS or head == "resources"


def _value_problems(m: Manifest, matrix: Mapping[str, Any]) -> Iterable[Diagnostic]:
    for key, values in matrix.items():
        if not values:
            yield make_diag("SW-002", f"matrix key {key!r} has no values", location=m.at("spec", "matrix", key), address=m.address)
        for index, value in enumerate(values):
            if not isinstance(value, str | int | float | bool) or (isinstance(value, float) and value != value):
                yield make_diag("SW-002", f"matrix value {value!r} is not a plain value", location=m.at("spec", "matrix", key, index),
                                address=m.address)
            elif any(_same(value, earlier) for earlier in values[:index]):
                yield make_diag("SW-002", f"matrix value {value!r} is repeated", location=m.at("spec", "matrix", key, index),
                                address=m.address)


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (isinstance(a, int | float) and isinstance(b, int | float) and not
                                             isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _named_body(name: str, configs: Mapping[str, Manifest]) -> Any:
    found = configs.get(name)
    if found is None:
        return None
    assert isinstance(found.resource, Config)
    body = found.resource.spec.config
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return body


def _name_clashes(m: Manifest, matrix: Mapping[str, list[Any]], names: Mapping[tuple[int, ...], str]) -> Iterable[Diagnostic]:
    seen: dict[str, tuple[int, ...]] = {}
    for picks, name in names.items():
        other = seen.setdefault(name, picks)
        if other != picks:
            key, index = next((k, i) for k, i, j in zip(matrix, picks, other, strict=True) if i != j)
            yield make_diag("SW-004", f"trials {_described(matrix, other)} and {_described(matrix, picks)} are both named {name!r}",
                            location=m.at("spec", "matrix", key, index), address=m.address)


def _described(matrix: Mapping[str, list[Any]], picks: tuple[int, ...]) -> str:
    return "{" + ", ".join(f"{k}: {v[i]!r}" for (k, v), i in zip(matrix.items(), picks, strict=True)) + "}"


def _trial(m: Manifest, base: dict[str, Any], picks: tuple[int, ...], name: str,
           configs: Mapping[str, Manifest]) -> tuple[Manifest | None, Diagnostic | None]:
    job = m.resource
    assert isinstance(job, FineTuningJob) and job.spec.matrix is not None
    doc = copy.deepcopy(base)
    doc["metadata"]["name"] = name
    if job.spec.adapter_name is not None:
        doc["spec"]["adapter_name"] = f"{job.spec.adapter_name}{name[len(m.name):]}"
    remap: list[tuple[FieldPath, FieldPath]] = []
    for (key, values), index in zip(job.spec.matrix.items(), picks, strict=True):
        path = tuple(key.split("."))
        _set(doc["spec"], path, values[index], configs)
        remap.append((("spec", *path), ("spec", "matrix", key, index)))
    try:
        trial = FineTuningJob.model_validate(doc)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = next((w for d, w in remap if tuple(error["loc"])[: len(d)] == d), ("spec", "matrix"))
        return None, make_diag("SW-003", f"trial {name}: {error['msg']}", location=m.location.at(*where), address=m.address)
    remap.sort(key=lambda pair: -len(pair[0]))
    remap.append((("metadata", "name"), ("spec", "matrix")))
    location = MappedLocation(m.location.file, m.location.doc, ("spec", "matrix"), remap=tuple(remap))
    return Manifest(trial, location, m.base_dir, m.unknown), None


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any, configs: Mapping[str, Manifest]) -> None:
    """Set a dotted setting in a spec document; a named Config whose body a key varies becomes an
    inline copy of its body (the trial's own config row, deduplicated by content as the Studio does)."""
    head = path[0]
    if len(path) > 1 and isinstance(spec.get(head), str):
        spec[head] = copy.deepcopy(_named_body(spec[head], configs))
    target = spec
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[path[-1]] = value


# -- names ---------------------------------------------------------------------------------------


def trial_names(job: str, matrix: Mapping[str, list[Any]]) -> dict[tuple[int, ...], str]:
    """Each combination of value indexes -> its trial's name, `<job>-<slug>`."""
    short = _abbreviations(list(matrix))
    out = {}
    for picks in itertools.product(*(range(len(v)) for v in matrix.values())):
        values = [(key, matrix[key][i]) for key, i in zip(matrix, picks, strict=True)]
        out[picks] = _bounded(f"{job}-" + "-".join(_part(short[k], v) for k, v in values), values)
    return out


def _bounded(name: str, values: list[tuple[str, Any]]) -> str:
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def _abbreviations(keys: list[str]) -> dict[str, str]:
    """Each key's short name: its last segment's, unless two keys share it (then every segment's)."""
    first = {k: _short(k.rsplit(".", 1)[-1]) for k in keys}
    out = {}
    for key, short in first.items():
        if list(first.values()).count(short) > 1:
            short = "".join(_short(part) for part in key.split("."))
        out[key] = short
    if len(set(out.values())) < len(out):
        out = {k: re.sub(r"[^A-Za-z0-9]", "", k) for k in keys}
    return out


def _short(word: str) -> str:
    if word in ABBREVIATIONS:
        return ABBREVIATIONS[word]
    words = [w for w in re.split(r"[^A-Za-z0-9]+", word) if w]
    return "".join(w[0] for w in words) if len(words) > 1 else (words[0] if words else "x")


def _part(short: str, value: Any) -> str:
    """`lr0p01`, `r8`, `epochs3`, `data-tickets-v2`, `fp16-true`: a name's part for one value."""
    if isinstance(value, bool):
        return f"{short}-{str(value).lower()}"
    if isinstance(value, int | float):
        text = str(value) if isinstance(value, int) else format(value, "g")
        return short + text.replace("-", "m", 1 if text.startswith("-") else 0).replace(".", "p").replace("+", "")
    return f"{short}-{re.sub(r'[^A-Za-z0-9]+', '-', str(value)).strip('-') or 'x'}"


# -- evaluations over a sweep --------------------------------------------------------------------


def _over_sweeps(m: Manifest, trials: Mapping[str, tuple[Manifest, ...]],
                 jobs: Mapping[str, Manifest]) -> tuple[Manifest, list[Diagnostic]]:
    """The evaluation with each `sweep:` combination replaced by one per trial of that sweep (a job
    without a matrix counts as a sweep of one trial)."""
    evaluation = m.resource
    assert isinstance(evaluation, EvaluationJob)
    combos: list[Combination] = []
    remap: list[tuple[FieldPath, FieldPath]] = []
    diags: list[Diagnostic] = []
    for index, combo in enumerate(evaluation.spec.combinations):
        written: FieldPath = ("spec", "combinations", index)
        if combo.sweep is None:
            remap.append((("spec", "combinations", len(combos)), written))
            combos.append(combo)
            continue
        if combo.adapter is not None:
            diags.append(make_diag("SW-006", location=m.at(*written, "adapter"), address=m.address))
            continue
        members = trials.get(combo.sweep) or ((jobs[combo.sweep],) if combo.sweep in jobs else ())
        if not members:
            diags.append(make_diag("SW-005", f"sweep {combo.sweep!r} is not a FineTuningJob in the manifests",
                                   location=m.at(*written, "sweep"), address=m.address))
            continue
        for trial in members:
            job = trial.resource
            assert isinstance(job, FineTuningJob)
            remap += [(("spec", "combinations", len(combos), "adapter"), (*written, "sweep")),
                      (("spec", "combinations", len(combos)), written)]
            combos.append(Combination(model=combo.model if combo.model is not None else job.spec.base_model,
                                      adapter=job.adapter_name))
    spec = evaluation.spec.model_copy(update={"combinations": combos})
    location = MappedLocation(m.location.file, m.location.doc, m.location.path, remap=tuple(sorted(remap, key=lambda p: -len(p[0]))))
    return Manifest(evaluation.model_copy(update={"spec": spec}), location, m.base_dir, m.unknown), diags
