"""Generate a realistic, valid ftctl manifest project of about N resources, for benchmarks and tests.

Resources come in groups of ten that reference each other the way a real project does: 1 Dataset
(project_csv), 1 Model (huggingface), 2 Prompts, 2 Configs (lora_config, training_arguments), 2
FineTuningJobs, 1 EvaluationJob and 1 ModelExport gated on that evaluation. Every reference points
backwards within the group, so the first N documents are always a valid project. Five CSV files under
`data/` are shared by all datasets. Config bodies differ per group, so none are duplicates (CF-004).
The Studio registers each Hub model id once (NM-004), so only the first groups name real Hub models;
later groups get ids of their own that are not on the Hub: the project is for offline use (`--offline`).

    python -m tests.bench.generate DIR N [many|one]

`files="many"` writes one file per resource (`<kind>/<group // 100>/<name>.yaml`); `files="one"`
writes every document into `all.yaml`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "ftctl/v1"
KINDS = ("Dataset", "Model", "Prompt", "Config", "FineTuningJob", "EvaluationJob", "ModelExport")
N_CSV = 5
CSV_COLUMNS = ("instruction", "intent", "response")
HF_MODELS = (
    "bigscience/bloom-560m",
    "Qwen/Qwen2.5-0.5B",
    "HuggingFaceTB/SmolLM2-135M",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
)
INTENTS = ("cancel_order", "track_order", "change_address", "refund", "complaint")


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Writes multi-line strings (prompt templates) as literal blocks, the way people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _csv_text(index: int, rows: int = 20) -> str:
    lines = [",".join(CSV_COLUMNS)]
    for row in range(rows):
        intent = INTENTS[(row + index) % len(INTENTS)]
        lines.append(f'"Customer {index}-{row} asks about {intent.replace("_", " ")}",{intent},"Sure, I can help."')
    return "\n".join(lines) + "\n"


def _hub_model(g: int) -> str:
    """Group g's Hub model id: a real one for the first groups, then one per group (NM-004: each id once)."""
    real = HF_MODELS[g % len(HF_MODELS)]
    return real if g < len(HF_MODELS) else f"ftctl-bench/{real.split('/')[1]}-g{g:05d}"


def _doc(kind: str, name: str, group: int, spec: dict[str, Any]) -> dict[str, Any]:
    labels = {"team": f"t{group % 7}", "bench": "generated"}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "labels": labels}, "spec": spec}


def _group(g: int, data_dir: str) -> list[dict[str, Any]]:
    """The ten documents of group g, each referencing only documents before it. data_dir: relative to the manifest."""
    ds, md, ev = f"ds-{g:05d}", f"md-{g:05d}", f"ev-{g:05d}"
    prompts, jobs, adapters = ([f"{p}-{g:05d}-{s}" for s in "ab"] for p in ("pr", "ft", "ad"))
    lora, targs = f"lora-{g:05d}", f"targs-{g:05d}"
    input_template = "### Instruction:\n{instruction}\n\n### Intent:\n"
    docs = [
        _doc("Dataset", ds, g, {
            "type": "project_csv",
            "location": f"{data_dir}/tickets-{g % N_CSV}.csv",
            "description": f"Support tickets, slice {g % N_CSV}",
        }),
        _doc("Model", md, g, {"type": "huggingface", "huggingface_model_name": _hub_model(g)}),
        _doc("Prompt", prompts[0], g, {
            "dataset": ds,
            "prompt_template": input_template + "{intent}\n",
            "input_template": input_template,
            "completion_template": "{intent}\n",
        }),
        _doc("Prompt", prompts[1], g, {
            "dataset": ds,
            "prompt_template": "<customer>{instruction}</customer>\n<agent>{response}</agent>\n",
            "input_template": "<customer>{instruction}</customer>\n<agent>",
            "completion_template": "{response}</agent>\n",
        }),
        # (g % 50, g // 50) and (g % 5, g // 5) identify g, so no two groups share a config body.
        _doc("Config", lora, g, {"type": "lora_config", "config": {
            "r": 8 + g % 50, "lora_alpha": 16 + g // 50, "lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM",
        }}),
        _doc("Config", targs, g, {"type": "training_arguments", "config": {
            "num_train_epochs": 1 + g % 5,
            "learning_rate": round((1 + g // 5) * 1e-5, 8),
            "per_device_train_batch_size": 1 << (g % 4),
        }}),
    ]
    for job, prompt, adapter in zip(jobs, prompts, adapters):
        docs.append(_doc("FineTuningJob", job, g, {
            "base_model": md,
            "dataset": ds,
            "prompt": prompt,
            "adapter_name": adapter,
            "lora_config": lora,
            "training_arguments": targs,
            "resources": {"cpu": 2, "memory": 16, "gpu": 1, "num_workers": 1},
        }))
    docs.append(_doc("EvaluationJob", ev, g, {
        "combinations": [{"model": md}, {"model": md, "adapter": adapters[0]}],
        "dataset": ds,
        "prompt": prompts[0],
        "resources": {"cpu": 2, "gpu": 0, "memory": 8},
    }))
    docs.append(_doc("ModelExport", f"ex-{g:05d}", g, {
        "type": "model_registry",
        "base_model": md,
        "adapter": adapters[0],
        "gate": {"evaluation": ev, "metric": "rougeL", "min": 0.1},
    }))
    return docs


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)


def generate_project(root: Path, n: int, *, files: str = "many") -> Path:
    """Write a valid project of n resources (at least 1) under root; returns root."""
    if files not in ("many", "one"):
        raise ValueError(f"files must be 'many' or 'one', not {files!r}")
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i in range(N_CSV):
        (root / "data" / f"tickets-{i}.csv").write_text(_csv_text(i), encoding="utf-8")
    data_dir = "data" if files == "one" else "../../data"
    docs = [doc for g in range((max(n, 1) + 9) // 10) for doc in _group(g, data_dir)][: max(n, 1)]
    if files == "one":
        (root / "all.yaml").write_text(_dump(docs), encoding="utf-8")
        return root
    made: set[Path] = set()
    for doc in docs:
        name = doc["metadata"]["name"]
        folder = root / doc["kind"].lower() / f"{int(name.split('-')[1]) // 100:03d}"
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (folder / f"{name}.yaml").write_text(_dump([doc]), encoding="utf-8")
    return root


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] not in ("many", "one")):
        print("usage: python -m tests.bench.generate DIR N [many|one]", file=sys.stderr)
        return 2
    root = generate_project(Path(argv[0]), int(argv[1]), files=argv[2] if len(argv) == 3 else "many")
    print(f"wrote {argv[1]} resources under {os.fspath(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
