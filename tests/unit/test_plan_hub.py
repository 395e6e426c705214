"""Registering Hub resources the Studio's way: a plan reads features, descriptions and model
families from a fake Hub over real HTTP on loopback, and offline it leaves them as the store has them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.plan import Policy
from tests.fakes.hub_server import FakeHub

MANIFESTS = """\
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: sql}
spec: {type: huggingface, huggingface_name: org/sql-data}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: bloom}
spec: {type: huggingface, huggingface_model_name: org/bloom}
---
apiVersion: ftctl/v1
kind: Config
metadata: {name: bloom-lora}
spec:
  type: lora_config
  model: bloom
  config: {r: 8, lora_alpha: 16, task_type: CAUSAL_LM}
"""


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_plan_registers_hub_features_description_and_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text(MANIFESTS)
    with FakeHub() as hub:
        card = {"dataset_info": {"features": [{"name": "question"}, {"name": "answer"}]}}
        hub.add_dataset("org/sql-data", card_data=card, description="SQL from questions")
        hub.add_model("org/bloom", config={"architectures": ["BloomForCausalLM"]})
        environ = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
        report = engine.make_plan(["m.yaml"], store="s.db", policy=Policy(), offline=False, environ=environ, use_cache=False)
    assert report.plan is not None, report.validation.diagnostics
    engine.execute_plan(report.plan, store="s.db", lock_wait_s=1)
    with sqlite3.connect("s.db") as conn:
        features, description = conn.execute("SELECT features, description FROM datasets").fetchone()
        [(family,)] = conn.execute("SELECT model_family FROM configs").fetchall()
    assert json.loads(features) == ["question", "answer"]
    assert description == "SQL from questions"
    assert family == "BloomForCausalLM"
    # Offline afterwards: what only the Hub knows is left as it is, so nothing changes.
    again = engine.make_plan(["m.yaml"], store="s.db", policy=Policy(), offline=True, use_cache=False)
    assert again.plan is not None and not again.plan.has_changes(), [c.fields for c in again.plan.actionable()]
