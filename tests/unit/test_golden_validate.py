"""Golden files pin what users see from `ftctl validate` in every format.

Each case folder under tests/golden/validate/ holds `manifests/` and one `expected.<format>` per
format. The real CLI runs from inside the case folder, so paths in the output are relative.
Regenerate with FTCTL_UPDATE_GOLDEN=1 and review the change as a diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "validate"
FORMATS = ("text", "json", "github", "sarif")
CASES = {"errors": 1, "valid": 0}  # case -> expected exit status
FTCTL = [sys.executable, "-m", "reconciler.cli"]


def run(case: str, fmt: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FTCTL_NO_CACHE": "1"}
    return subprocess.run(
        [*FTCTL, "validate", "--offline", "--format", fmt, "manifests/"],
        cwd=GOLDEN / case, capture_output=True, text=True, env=env, timeout=60, check=False,
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_output_matches_golden(case: str, fmt: str) -> None:
    proc = run(case, fmt)
    assert proc.returncode == CASES[case], proc.stderr
    assert "Traceback" not in proc.stderr
    expected = GOLDEN / case / f"expected.{fmt}"
    if os.environ.get("FTCTL_UPDATE_GOLDEN"):
        expected.write_text(proc.stdout, encoding="utf-8")
    assert proc.stdout == expected.read_text(encoding="utf-8")


def test_text_points_at_the_offending_lines() -> None:
    text = (GOLDEN / "errors" / "expected.text").read_text()
    for needle in (
        "manifests/broken.yaml:5:1: LD-002 error",
        "manifests/project.yaml:11:3: PR-101 error: prompt_template: placeholder {intnet}",
        "manifests/project.yaml:20:18: CF-101 error: 'lora_alpah'",
        "manifests/project.yaml:26:3: SC-001 error: unknown field 'spec.base_modle'",
        "    hint: Did you mean 'base_model'?",
        "    hint: Did you mean 'lora_alpha'?",
    ):
        assert needle in text, needle


def test_github_annotations_are_well_formed() -> None:
    lines = (GOLDEN / "errors" / "expected.github").read_text().splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert annotations
    for line in annotations:
        assert re.match(r"^::(error|warning|notice) file=[^,]+,line=\d+,col=\d+,title=[^:]+::.+", line), line


def test_sarif_is_structurally_valid() -> None:
    sarif = json.loads((GOLDEN / "errors" / "expected.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    run_ = sarif["runs"][0]
    rule_ids = [rule["id"] for rule in run_["tool"]["driver"]["rules"]]
    assert run_["results"]
    for result in run_["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1


def test_json_is_versioned_and_counts_match() -> None:
    doc = json.loads((GOLDEN / "errors" / "expected.json").read_text())
    assert doc["format_version"] == 1 and doc["valid"] is False
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert doc["summary"]["errors"] == len(errors) > 0
