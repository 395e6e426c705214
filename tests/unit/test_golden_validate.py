"""Golden files pin what users see from `ftctl validate` in every format.

Each case folder under tests/golden/validate/ holds `manifests/` and one `expected.<format>` per
format. The real CLI runs from inside the case folder (`ftctl validate --offline --format F
manifests/`), so paths in the output are relative and stable. Regenerate with
FTCTL_UPDATE_GOLDEN=1 (the comparison then rewrites the expected files and passes) and review the
change as a diff: see tests/README.md.

Cases: `errors` and `mixed` (errors, warnings and an info across several files, one of them a YAML
syntax error; in `mixed` every offending line carries a comment naming its code), `valid` (exit 0,
the summary line alone).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.catalog import RULES

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "validate"
FORMATS = ("text", "json", "github", "sarif")
CASES = {"errors": 1, "mixed": 1, "valid": 0}  # case -> expected exit status
FTCTL = [sys.executable, "-m", "reconciler.cli"]
SUMMARY = re.compile(r"^(valid|invalid): \d+ errors?, \d+ warnings? in \d+ manifests? from \d+ files?$")
GITHUB_ANNOTATION = re.compile(r"^::(error|warning|notice) file=[^,]+,line=\d+,col=\d+,title=.*::.+")


def run(case: str, fmt: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FTCTL_NO_CACHE": "1"}
    env.pop("FTCTL_DEBUG", None)
    return subprocess.run(
        [*FTCTL, "validate", "--offline", "--format", fmt, "manifests/"],
        cwd=GOLDEN / case, capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def expected(case: str, fmt: str) -> str:
    return (GOLDEN / case / f"expected.{fmt}").read_text(encoding="utf-8")


def expected_json(case: str) -> dict[str, Any]:
    return json.loads(expected(case, "json"))


def test_every_case_folder_is_listed() -> None:
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert folders == set(CASES), "add the case to CASES (with its exit status), or remove the folder"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_output_matches_golden(case: str, fmt: str) -> None:
    proc = run(case, fmt)
    assert proc.returncode == CASES[case], proc.stderr
    assert "Traceback" not in proc.stderr
    path = GOLDEN / case / f"expected.{fmt}"
    if os.environ.get("FTCTL_UPDATE_GOLDEN") == "1":
        path.write_text(proc.stdout, encoding="utf-8")
    assert proc.stdout == path.read_text(encoding="utf-8")


# --- what the expected files must say, whatever they were regenerated to ------------------------


def test_text_points_at_the_offending_lines() -> None:
    text = expected("errors", "text")
    for needle in (
        "manifests/broken.yaml:5:1: LD-002 error",
        "manifests/project.yaml:11:3: PR-101 error: prompt_template: placeholder {intnet}",
        "manifests/project.yaml:20:18: CF-101 error: 'lora_alpah'",
        "manifests/project.yaml:26:3: SC-001 error: unknown field 'spec.base_modle'",
        "    hint: Did you mean 'base_model'?",
        "    hint: Did you mean 'lora_alpha'?",
    ):
        assert needle in text, needle


def test_mixed_every_diagnostic_is_on_the_line_that_names_it() -> None:
    """In `mixed`, each offending line ends in a comment naming the code it must get: every
    diagnostic lands on such a line, and every such line gets its diagnostic."""
    case = GOLDEN / "mixed"
    marked: set[tuple[str, int, str]] = set()
    for path in sorted((case / "manifests").glob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            comment = line.partition(" # ")[2]
            for code in re.findall(r"\b[A-Z]{2}-\d{3}\b", comment):
                marked.add((f"manifests/{path.name}", number, code))
    got = set()
    for d in expected_json("mixed")["diagnostics"]:
        source = (case / d["file"]).read_text(encoding="utf-8").splitlines()
        assert 1 <= d["line"] <= len(source), d
        assert 1 <= d["col"] <= len(source[d["line"] - 1]) + 1, d
        got.add((d["file"], d["line"], d["code"]))
    assert got == marked
    assert {d["code"] for d in expected_json("mixed")["diagnostics"]} >= {
        "SC-001", "SC-002", "RF-001", "FT-002", "PR-101", "CF-101", "LD-002", "FT-102", "ON-001",
    }


def test_mixed_hints_are_specific() -> None:
    hints = {d["code"]: d["hint"] for d in expected_json("mixed")["diagnostics"]}
    assert hints["SC-001"] == "Did you mean 'dataset'?"
    assert hints["CF-101"] == "Did you mean 'lora_alpha'?"


def test_valid_case_prints_only_the_summary() -> None:
    assert SUMMARY.match(expected("valid", "text").rstrip("\n"))
    assert expected("valid", "text").startswith("valid: 0 errors, 0 warnings")
    assert expected("valid", "github") == expected("valid", "text")
    doc = expected_json("valid")
    assert doc["valid"] is True and doc["diagnostics"] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_and_github_end_in_the_summary_line(case: str) -> None:
    for fmt in ("text", "github"):
        lines = expected(case, fmt).splitlines()
        assert SUMMARY.match(lines[-1]), (fmt, lines[-1])
        assert lines[-1].startswith("valid:" if CASES[case] == 0 else "invalid:")


@pytest.mark.parametrize("case", sorted(CASES))
def test_github_annotations_are_well_formed(case: str) -> None:
    lines = expected(case, "github").splitlines()[:-1]
    diags = expected_json(case)["diagnostics"]
    assert len(lines) == len(diags)  # one annotation per diagnostic, and nothing else
    for line, d in zip(lines, diags, strict=True):
        if d["line"]:
            assert GITHUB_ANNOTATION.match(line), line
            assert f"file={d['file']},line={d['line']},col={d['col']}," in line, line
        else:
            assert line.startswith("::"), line


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_is_versioned_and_counts_match(case: str) -> None:
    doc = expected_json(case)
    assert doc["format_version"] == 1
    diags = doc["diagnostics"]
    by_severity = {s: sum(1 for d in diags if d["severity"] == s) for s in ("error", "warning", "info")}
    assert doc["summary"]["errors"] == by_severity["error"]
    assert doc["summary"]["warnings"] == by_severity["warning"]
    assert doc["summary"]["infos"] == by_severity["info"]
    assert doc["valid"] is (by_severity["error"] == 0) is (CASES[case] == 0)
    for d in diags:
        assert d["code"] in RULES
        assert d["file"] is None or not os.path.isabs(d["file"]), d  # relative: goldens are portable


@pytest.mark.parametrize("case", sorted(CASES))
def test_sarif_is_structurally_valid(case: str) -> None:
    """Structural checks only: the SARIF 2.1.0 JSON Schema is not available offline."""
    sarif = json.loads(expected(case, "sarif"))
    assert sarif["version"] == "2.1.0"
    assert len(sarif["runs"]) == 1
    run_ = sarif["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert rules, "runs[0].tool.driver.rules is empty"
    rule_ids = [rule["id"] for rule in rules]
    assert len(rule_ids) == len(set(rule_ids))
    assert set(rule_ids) == set(RULES)
    diags = expected_json(case)["diagnostics"]
    assert len(run_["results"]) == len(diags)
    for result, d in zip(run_["results"], diags, strict=True):
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"] == d["code"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        for location in result.get("locations", []):
            physical = location["physicalLocation"]
            uri = physical["artifactLocation"]["uri"]
            assert not uri.startswith("/") and (GOLDEN / case / uri).is_file(), uri
            if "region" in physical:
                assert physical["region"]["startLine"] >= 1
                assert physical["region"]["startColumn"] >= 1
                assert (physical["region"]["startLine"], physical["region"]["startColumn"]) == (d["line"], d["col"])
    if CASES[case] == 0:
        assert not any(r["level"] == "error" for r in run_["results"])
