"""reconciler.localfiles: the family of local (project) models, read from their config.json."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.facts import model_family
from reconciler.localfiles import gather_facts
from reconciler.manifests import load_paths
from reconciler.safeio import ReadRoots


def project_model(name: str, location: str, model_type: str = "project") -> str:
    return (
        f"apiVersion: ftctl/v1\nkind: Model\nmetadata:\n  name: {name}\n"
        f"spec:\n  type: {model_type}\n  location: {location}\n"
    )


def test_local_model_family_is_the_first_architecture_of_its_config_json(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name, config in {
        "llama": {"architectures": ["LlamaForCausalLM", "Other"], "model_type": "llama"},
        "no-arch": {"model_type": "llama"},
        "empty-arch": {"architectures": []},
    }.items():
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(json.dumps(config))
    (models / "broken").mkdir()
    (models / "broken" / "config.json").write_text("{not json")
    (models / "no-config").mkdir()
    (models / "hub-typed").mkdir()
    (models / "hub-typed" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    (tmp_path / "ftctl.toml").write_text("")  # the project root: the models beside specs/ are inside it
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "models.yaml").write_text(
        "---\n".join(
            [
                project_model("llama", "../models/llama"),  # resolved against the manifest's folder
                project_model("again", str(models / "llama")),  # the same folder, absolute
                project_model("no-arch", "../models/no-arch"),
                project_model("empty-arch", "../models/empty-arch"),
                project_model("broken", "../models/broken"),
                project_model("no-config", "../models/no-config"),
                project_model("missing", "../models/missing"),
                project_model("file", "models.yaml"),
                project_model("hub-typed", "../models/hub-typed", model_type="model_registry"),
            ]
        )
    )
    loaded = load_paths([str(specs)])
    assert loaded.diagnostics == []
    facts = gather_facts(loaded.manifests, roots=ReadRoots.for_paths([str(specs)], {}))
    assert facts.model_families == {str(models / "llama"): "LlamaForCausalLM"}
    assert facts.path(str(models / "llama")).is_dir


def test_model_family_of_a_parsed_config() -> None:
    assert model_family({"architectures": ["BloomForCausalLM"]}) == "BloomForCausalLM"
    assert model_family({"architectures": "BloomForCausalLM"}) is None
    assert model_family({"architectures": [""]}) is None
    assert model_family({"architectures": [None]}) is None
    assert model_family(["BloomForCausalLM"]) is None
