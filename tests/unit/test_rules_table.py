"""One case per rule code of `reconciler.catalog.RULES`: the smallest input that breaks the rule.

Every case starts from the valid project in `rules_base/` (a Dataset with a 3-row CSV, a huggingface
Model, a Prompt, three Configs, a FineTuningJob, an EvaluationJob and a ModelExport, all named
`base-*`), adds its own `case.yaml` (plus any files it needs), runs `validate` on the folder and
checks that the rule's code comes back with the catalog's severity, in the expected file, at the
expected line. Lines are 1-based lines of `case.yaml`; where a case's YAML has a `# <--` marker, the
marker sits on that line (checked, so the table cannot drift). A case also lists, in `also`, every
other code it is known to raise: anything else is a failure, so each case stays minimal.

Codes that no input to `validate` can raise are listed in `UNREACHABLE` with the reason, and their
pure functions are tested directly below the table.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.catalog import RULES
from reconciler.diagnostics import Diagnostic, Severity
from reconciler.engine import validate

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so `tests.fakes` imports under plain `pytest` too
    sys.path.insert(0, str(REPO))

from tests.fakes.hub_server import FakeHub  # noqa: E402

BASE = Path(__file__).resolve().parent / "rules_base"
MARK = "# <--"


@dataclass(frozen=True)
class Case:
    code: str
    yaml: str | bytes  # the content of case.yaml (str is dedented; bytes are written as they are)
    line: int | None  # the line the diagnostic points at; None: the diagnostic has no position
    file: str | None = "case.yaml"  # relative to the project folder; None: no file at all
    also: tuple[str, ...] = ()  # other codes (besides ON-001 notes) this input is known to raise
    files: dict[str, str | bytes] = field(default_factory=dict)  # extra files, relative paths
    dirs: tuple[str, ...] = ()  # extra (empty) directories
    symlinks: dict[str, str] = field(default_factory=dict)  # link name -> target
    base: bool = True  # start from rules_base/
    online: bool = False  # run the Hub checks against a fake Hub (offline=False)
    hub: Callable[[FakeHub], None] | None = None  # prepares the fake Hub
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str | bytes:
        return self.yaml if isinstance(self.yaml, bytes) else dedent(self.yaml).lstrip("\n")


def _deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


# A YAML "billion laughs" in the second document (line 6 on): 6 levels of 10 aliases expand to a
# million values. The first document is fine, so the diagnostic must name the second.
_LAUGHS = "\n".join(
    ["apiVersion: ftctl/v1", "kind: Dataset", "metadata: {name: fine}", "spec: {type: project_csv, location: data.csv}", "---"]
    + ["apiVersion: ftctl/v1", "kind: Dataset", "metadata: {name: laughs}", "spec:", "  description: x", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
) + "\n"


CASES: list[Case] = [
    # ------------------------------------------------------------------ fine-tuning jobs (Studio)
    Case("FT-001", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          framework_type: trl  # <--
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
        """, line=5),
    Case("FT-002", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          adapter_name: my_adapter  # <--
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
        """, line=5),
    Case("FT-003", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          out_dir: no-such-dir  # <--
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
        """, line=5),
    Case("FT-004", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:
            cpu: 0  # <--
        """, line=9),
    Case("FT-005", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:
            gpu: -1  # <--
        """, line=9),
    Case("FT-006", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:
            memory: 0  # <--
        """, line=9),
    Case("FT-007", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:
            num_workers: 0  # <--
        """, line=9),
    Case("FT-008", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          num_epochs: 0  # <--
        """, line=8),
    Case("FT-009", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          learning_rate: 0.0  # <--
        """, line=8),
    Case("FT-010", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          dataset_fraction: 0.0  # <--
        """, line=8),
    Case("FT-011", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          train_test_split: 1.5  # <--
        """, line=8),
    Case("FT-012", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          framework_type: axolotl  # <--
          base_model: base-model
          dataset: base-data
        """, line=5),
    Case("FT-013", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: no-such-model  # <--
          dataset: base-data
          prompt: base-prompt
        """, line=5),
    Case("FT-014", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: no-such-data  # <--
          prompt: base-prompt
        """, line=6),
    Case("FT-015", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: no-such-prompt  # <--
        """, line=7),
    Case("FT-016", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          framework_type: axolotl
          base_model: base-model
          dataset: base-data
          axolotl_config: no-such-config  # <--
        """, line=8),
    # ------------------------------------------------------------------ fine-tuning jobs (ftctl)
    Case("FT-101", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:  # <--
          base_model: base-model
          dataset: base-data
        """, line=4),
    Case("FT-102", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          train_test_split: 1.0  # <--
        """, line=8),
    Case("FT-103", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          dataset_fraction: 0.1  # <-- 3 rows x 0.1 samples no row at all
        """, line=8),
    Case("FT-105", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          framework_type: axolotl
          base_model: base-model
          dataset: base-data
          axolotl_config: {base_model: org/base-model}
          lora_config: base-lora  # <--
        """, line=9),
    # ------------------------------------------------------------------ evaluation jobs (Studio)
    Case("EV-001", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations: []  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=7),
    Case("EV-002", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:  # <--
          prompt: base-prompt
          combinations: [{model: base-model}]
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=4),
    Case("EV-003", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:  # <--
          dataset: base-data
          combinations: [{model: base-model}]
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=4),
    Case("EV-004", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations: [{model: base-model}]
          resources:
            cpu: 0  # <--
            gpu: 0
            memory: 8
        """, line=9),
    Case("EV-005", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - model: no-such-model  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=8),
    Case("EV-006", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - model: base-model
              adapter: no-such-adapter  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=9),
    Case("EV-007", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: no-such-data  # <--
          prompt: base-prompt
          combinations: [{model: base-model}]
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=5),
    Case("EV-008", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: no-such-prompt  # <--
          combinations: [{model: base-model}]
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=6),
    # ------------------------------------------------------------------ evaluation jobs (ftctl)
    Case("EV-101", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - {model: base-model}
            - {model: base-model}  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=9),
    Case("EV-102", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: other-model}
        spec: {type: model_registry, cml_registered_model_id: mr-1234}
        ---
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - model: other-model
              adapter: base-job  # <-- trained on base-model
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=14),
    Case("EV-103", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations: [{model: base-model}]
          resources: {cpu: 2, gpu: 0, memory: 8}
          eval_dataset_fraction: 0.0  # <--
        """, line=9),
    # ------------------------------------------------------------------ datasets
    Case("DS-001", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: parquet  # <--
          location: data.parquet
        """, line=5),
    Case("DS-002", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: huggingface
          huggingface_name: org/no-such-data  # <--
        """, line=6, online=True),
    Case("DS-003", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: project_csv
          location: no-such-file.csv  # <--
        """, line=6),
    Case("DS-101", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:  # <--
          type: huggingface
        """, line=4),
    Case("DS-102", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: project_csv
          location: empty.csv  # <--
        """, line=6, files={"empty.csv": ""}),
    # ------------------------------------------------------------------ models
    Case("MD-001", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: gguf  # <--
        """, line=5),
    Case("MD-002", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: huggingface
          huggingface_model_name: org/no-such-model  # <--
        """, line=6, online=True),
    Case("MD-003", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:  # <--
          type: model_registry
        """, line=4),
    Case("MD-101", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:  # <--
          type: huggingface
        """, line=4),
    Case("MD-102", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: project
          location: weights.bin  # <--
        """, line=6, files={"weights.bin": b"not a folder"}),
    Case("MD-104", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: project
          location: no-such-dir  # <--
        """, line=6),
    # ------------------------------------------------------------------ adapters
    Case("AD-001", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: ""}  # <--
        spec: {type: huggingface, model: base-model, huggingface_name: org/adapter}
        """, line=3),
    Case("AD-002", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:
          type: huggingface
          model: no-such-model  # <--
          huggingface_name: org/adapter
        """, line=6),
    Case("AD-003", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:
          model: base-model
          location: no-such-dir  # <--
        """, line=6),
    Case("AD-004", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:
          type: huggingface
          model: base-model
          huggingface_name: org/adapter
          fine_tuning_job: no-such-job  # <--
        """, line=8),
    Case("AD-005", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:
          type: huggingface
          model: base-model
          huggingface_name: org/adapter
          prompt: no-such-prompt  # <--
        """, line=8),
    Case("AD-101", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:  # <--
          type: huggingface
          model: base-model
        """, line=4),
    Case("AD-102", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: adapter}
        spec:
          model: base-model
          location: adapter-dir  # <-- a directory without adapter_config.json
        """, line=6, dirs=("adapter-dir",)),
    # ------------------------------------------------------------------ prompts
    Case("PR-001", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: base-prompt}  # <-- declared in base.yaml too
        spec:
          dataset: base-data
          prompt_template: "{question}"
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=3),
    Case("PR-002", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:  # <--
          prompt_template: "{question}"
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=4),
    Case("PR-003", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: base-data
          prompt_template: " "  # <--
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=6),
    Case("PR-004", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:  # <--
          dataset: base-data
          prompt_template: "{question}"
          completion_template: "{answer}"
        """, line=4),
    Case("PR-005", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:  # <--
          dataset: base-data
          prompt_template: "{question}"
          input_template: "{question}"
        """, line=4),
    Case("PR-101", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: base-data
          prompt_template: "{question} {Answer}"  # <-- the column is answer
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=6),
    Case("PR-102", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: base-data
          prompt_template: "{question} {answer"  # <--
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=6),
    # ------------------------------------------------------------------ configs
    Case("CF-001", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: peft_config  # <--
          config: {r: 8}
        """, line=5),
    Case("CF-002", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: lora_config
          config: '{"r": 8,'  # <--
        """, line=6),
    Case("CF-003", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: axolotl
          config: "base_model: [org/model"  # <--
        """, line=6),
    Case("CF-004", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: lora_config
          config: {task_type: CAUSAL_LM, lora_alpha: 16, r: 8}  # <-- the body of base-lora
        """, line=6),
    Case("CF-101", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: lora_config
          config:
            r: 8
            lora_alpah: 16  # <--
        """, line=8),
    Case("CF-102", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: lora_config
          config:
            r: eight  # <--
        """, line=7),
    Case("CF-103", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: lora_config
          config: "[8, 16]"  # <-- JSON, but not an object
        """, line=6),
    Case("CF-105", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: config}
        spec:
          type: training_arguments
          config:
            warmup_ratio: 0.03  # <-- dropped by transformers 5; the runner maps it to warmup_steps
        """, line=7),
    Case("CF-104", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-training  # <-- a training_arguments Config
        """, line=8),
    # ------------------------------------------------------------------ exports
    Case("EX-001", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:  # <--
          adapter: base-job
        """, line=4),
    Case("EX-002", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: no-such-adapter  # <--
        """, line=6),
    Case("EX-003", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          model_name: ""  # <--
        """, line=7),
    Case("EX-004", """
        apiVersion: ftctl/v1
        kind: Adapter
        metadata: {name: hub-adapter}
        spec: {type: huggingface, model: base-model, huggingface_name: org/adapter}
        ---
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          type: cml_model
          base_model: base-model
          adapter: hub-adapter  # <--
        """, line=12),
    Case("EX-005", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: registry-model}
        spec: {type: model_registry, cml_registered_model_id: mr-1234}
        ---
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          type: cml_model
          base_model: registry-model  # <--
          adapter: base-job
        """, line=11, also=("EX-103",)),  # base-job trained on base-model, so EX-103 as well
    Case("EX-101", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          gate:
            evaluation: no-such-eval  # <--
            metric: rougeL
            min: 0.5
        """, line=8),
    Case("EX-102", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          type: onnx  # <--
          base_model: base-model
          adapter: base-job
        """, line=5),
    Case("EX-103", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: other-model}
        spec: {type: huggingface, huggingface_model_name: org/other}
        ---
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: other-model
          adapter: base-job  # <-- trained on base-model
        """, line=11),
    # ------------------------------------------------------------------ loading
    Case("LD-001", b"apiVersion: ftctl/v1\nkind: Dataset\nmetadata: {name: caf\xe9}\n", line=3),
    Case("LD-002", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data]  # <--
        """, line=3),
    Case("LD-003", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec: {type: project_csv, location: data.csv}
        kind: Model  # <--
        """, line=5),
    Case("LD-004", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: project_csv
          location: !env DATA_CSV  # <--
        """, line=6, also=("DS-101",)),  # the tagged value loads as null, so location is missing
    Case("LD-005", _LAUGHS, line=6),
    Case("LD-006", b"# padding\n" * (900 * 1024), line=1),  # 9,216,000 bytes; the limit is 8 MiB
    Case("LD-007", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec: {type: project_csv, location: data.csv}
        ---
        - apiVersion: ftctl/v1  # <-- a list, not a mapping
        """, line=6),
    Case("LD-008", "", line=None, file="dangling.yaml", symlinks={"dangling.yaml": "no-such-target.yaml"}),
    Case("LD-009", """
        apiVersion: ftctl/v2  # <--
        kind: Dataset
        metadata: {name: data}
        spec: {type: project_csv, location: data.csv}
        """, line=1),
    Case("LD-010", """
        apiVersion: ftctl/v1
        kind: Datasets  # <--
        metadata: {name: data}
        spec: {type: project_csv, location: data.csv}
        """, line=2),
    Case("LD-011", f"""
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {{name: data}}
        spec: {{type: project_csv, location: data.csv, description: {_deep_list(70)}}}  # <-- level 65
        """, line=4),
    Case("LD-012", "", line=None, file=None, base=False),
    Case("LD-013", """
        name: ci  # <-- a CI workflow kept beside the manifests: neither apiVersion nor kind
        on: [push]
        jobs: {check: {runs-on: ubuntu-latest, steps: [{run: ftctl validate}]}}
        """, line=1),
    Case("LD-014", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: users}
        spec:
          type: project_csv
          location: users.csv  # <-- a symlink out of the project
        """, line=6, symlinks={"users.csv": "/etc/passwd"}),
    Case("LD-015", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: zeros}
        spec:
          type: project_csv
          location: zeros.csv  # <-- a device, inside an allowed read root
        """, line=6, symlinks={"zeros.csv": "/dev/zero"}, environ={"FTCTL_READ_ROOTS": "/dev"}),
    Case("LD-016", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: local}
        spec:
          type: project
          location: model  # <-- its config.json is over 4 MiB
        """, line=6, files={"model/config.json": b" " * (4 * 1024 * 1024 + 1)}),
    # ------------------------------------------------------------------ schema
    Case("SC-001", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: project_csv
          location: data.csv
          descripton: Questions and answers  # <--
        """, line=7),
    Case("SC-002", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          num_epochs: three  # <--
        """, line=8),
    Case("SC-003", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          gate:  # <-- no metric
            evaluation: base-eval
            min: 0.5
        """, line=7),
    Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: huggingface
          huggingface_model_name: org/other-model
          hf_token: hf_abcdef  # <--
        """, line=7),
    # ------------------------------------------------------------------ references
    Case("RF-001", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: no-such-data  # <--
          prompt_template: "{question}"
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=5),
    Case("RF-002", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: base-model  # <-- a Model
          prompt_template: "{question}"
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=5),
    Case("RF-004", """
        apiVersion: ftctl/v1
        kind: Prompt
        metadata: {name: prompt}
        spec:
          dataset: {id: 5f0c1e9a-2b7d-4c4e-9a61-0d3b8f1e2a47}  # <--
          prompt_template: "{question}"
          input_template: "{question}"
          completion_template: "{answer}"
        """, line=5),
    # ------------------------------------------------------------------ names
    Case("NM-001", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: base-data}  # <-- declared in base.yaml too
        spec: {type: project_csv, location: data.csv}
        """, line=3),
    Case("NM-002", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          adapter_name: base-job  # <-- what FineTuningJob/base-job trains
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
        """, line=5),
    Case("NM-004", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: bloom-again}
        spec:
          type: huggingface
          huggingface_model_name: org/base-model  # <-- also registered by Model/base-model
        """, line=6),
    Case("NM-003", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: " data"}  # <--
        spec: {type: project_csv, location: data.csv}
        """, line=3),
    # ------------------------------------------------------------------ run-time failures caught early
    Case("FT-106", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          user_script: scripts/train.py  # <-- no such file
        """, line=8),
    # ------------------------------------------------------------------ scale-out (issue 15)
    Case("FT-107", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          framework_type: axolotl
          base_model: base-model
          dataset: base-data
          axolotl_config: {adapter: lora}
          resources:
            num_workers: 2  # <--
        """, line=10),
    Case("FT-108", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:
            gpu: 2
            num_workers: 2
            dist_gpu: 1  # <-- two processes on one GPU
        """, line=11),
    Case("FT-109", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          training_arguments: {fsdp: full_shard auto_wrap}
          bnb_config: {load_in_4bit: true}  # <--
          resources: {gpu: 2}
        """, line=9),
    Case("FT-110", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          training_arguments: {fsdp: full_shard}  # <--
          resources: {gpu: 0, num_workers: 2}
        """, line=8),
    Case("CF-106", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: quantized}
        spec:
          type: bitsandbytes_config
          config:
            load_in_4bit: true
            load_in_8bit: true  # <--
        """, line=8),
    Case("EX-104", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: endpoint}
        spec:
          type: cml_model
          base_model: base-model
          adapter: base-job
          resources: {cpu: 2, memory: 0}  # <--
        """, line=8),
    Case("EX-105", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          gate: {evaluation: base-eval, metric: rougeL, min: 0.9, max: 0.1}  # <--
        """, line=7),
    Case("EX-106", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          gate: {evaluation: base-eval, metric: rouge_l, min: 0.1}  # <--
        """, line=7),
    # ------------------------------------------------------------------ sweeps (a FineTuningJob's matrix)
    Case("SW-001", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:
            adapter_name: [a, b]  # <--
        """, line=11),
    Case("SW-002", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:
            lora_config.r: [4, 8, 4]  # <-- the third value repeats the first
        """, line=11),
    Case("SW-003", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:
            dataset_fraction: [1.0, fast]  # <--
        """, line=11),
    Case("SW-004", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:
            dataset: [data.v2, data-v2]  # <-- both slug to data-data-v2
        """, line=11),
    Case("SW-005", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval-sweep}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - {model: base-model}
            - {sweep: no-such-job}  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=9),
    Case("SW-006", """
        apiVersion: ftctl/v1
        kind: EvaluationJob
        metadata: {name: eval-sweep}
        spec:
          dataset: base-data
          prompt: base-prompt
          combinations:
            - {model: base-model}
            - {model: base-model, adapter: base-job, sweep: base-job}  # <--
          resources: {cpu: 2, gpu: 0, memory: 8}
        """, line=9),
    Case("SW-007", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:
            bnb_config.load_in_4bit: [true, false]  # <-- bnb_config is a store config
          bnb_config: {id: 6f1c2b1e-4d0a-4a57-9d0e-0f7c7c1a2b3c}
        """, line=11, also=("RF-004",)),
    Case("SW-008", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: sweep}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          lora_config: base-lora
          training_arguments: base-training
          matrix:  # <--
            lora_config.r: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
            lora_config.lora_alpha: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
            training_arguments.learning_rate: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        """, line=10),
    Case("SW-009", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata:
          name: sweep
          annotations:
            ftctl.io/store-id: 6f1c2b1e-4d0a-4a57-9d0e-0f7c7c1a2b3c  # <--
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          matrix:
            lora_config.r: [4, 8]
        """, line=6),
    Case("EX-107", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          base_model: base-model
          adapter: base-job
          select: {evaluation: base-eval, metric: rougeL}  # <--
        """, line=7),
    Case("EX-108", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:
          select: {evaluation: base-eval, metric: bleu}  # <--
        """, line=5),
    Case("SC-005", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          user_config: {batch: 18446744073709551616}  # <-- 2**64
        """, line=8),
    Case("NM-005", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata:
          name: data
          annotations: {ftctl.io/store-id: row-42}  # <--
        spec: {type: project_csv, location: data.csv}
        """, line=5),
    Case("NM-006", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata:
          name: data
          annotations: {ftctl.io/protectd: "true"}  # <--
        spec: {type: project_csv, location: data.csv}
        """, line=5),
    Case("NM-007", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: "data\\u200b"}  # <-- a zero-width space
        spec: {type: project_csv, location: data.csv}
        """, line=3),
    Case("NM-008", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: "b\\u0430se-data"}  # <-- a Cyrillic a
        spec: {type: project_csv, location: data.csv}
        """, line=3),
    # ------------------------------------------------------------------ online checks
    Case("ON-001", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: huggingface
          huggingface_name: org/data  # <--
        """, line=6, base=False),  # one notice for all skipped checks, at the first one
    Case("ON-002", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: huggingface
          huggingface_name: org/data  # <--
        """, line=6, online=True, hub=lambda hub: (hub.add_dataset("org/data"), hub.fail_next(10, status=503))),
    Case("ON-003", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: data}
        spec:
          type: huggingface
          huggingface_name: org/data
          hf_token_env: DATA_TOKEN  # <-- not in the environment
        """, line=7, online=True, hub=lambda hub: hub.add_dataset("org/data")),
    # ------------------------------------------------------------------ policy ([policy] in ftctl.toml)
    Case("PO-003", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:  # <-- 2 GPUs
            gpu: 2
        """, line=8, files={"ftctl.toml": "[policy]\nmax_gpus = 1\n"}),
    Case("PO-004", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          resources:  # <-- 3 workers
            num_workers: 3
        """, line=8, files={"ftctl.toml": "[policy]\nmax_workers = 2\n"}),
    Case("PO-005", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: big-model}
        spec: {type: huggingface, huggingface_model_name: org/big-70b}
        ---
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: big-model  # <-- not listed
          dataset: base-data
          prompt: base-prompt
        """, line=10, files={"ftctl.toml": '[policy]\nallowed_base_models = ["base-model"]\n'}),
    Case("PO-006", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          backend: cml  # <-- only local is allowed
        """, line=8, files={"ftctl.toml": '[policy]\nallowed_backends = ["local"]\n'}),
    Case("PO-007", """
        apiVersion: ftctl/v1
        kind: ModelExport
        metadata: {name: export}
        spec:  # <-- no gate
          base_model: base-model
          adapter: base-job
        """, line=4, files={"ftctl.toml": "[policy]\nexport_requires_gate = true\n"}),
]

# Codes no input to `validate` can raise, with the reason; each has a direct test below.
UNREACHABLE: dict[str, str] = {
    "RF-003": (
        "reference fields only point down a fixed order of kinds (see test_reference_fields_cannot_form_a_cycle), "
        "so no set of manifests has a reference cycle; find_cycles and check_cycles are tested directly"
    ),
    "MD-103": "raised by plan, which asks the CML Model Registry (validate does not); tested in test_registry_import.py",
    "AD-103": "raised by plan, which asks the CML Model Registry (validate does not); tested in test_registry_import.py",
    "CF-107": (
        "validate always finds the schemas the package ships; an install without them is tested in "
        "tests/e2e/test_installed_wheel.py, and the rule directly below"
    ),
    "PO-001": "raised by plan from the plan's GPU-hours (validate has no plan); tested in test_policy.py and tests/e2e/test_policy_cli.py",
    "PO-002": "raised by plan from the plan's cost (validate has no plan); tested in test_policy.py and tests/e2e/test_policy_cli.py",
}


# --------------------------------------------------------------------------------------- running


def write_project(case: Case, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if case.base:
        shutil.copytree(BASE, root, dirs_exist_ok=True)
    text = case.text
    if case.file == "case.yaml":
        target = root / "case.yaml"
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8")
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name in case.dirs:
        (root / name).mkdir(parents=True)
    for name, target_name in case.symlinks.items():
        (root / name).symlink_to(root / target_name)


@pytest.fixture
def online_hub(monkeypatch: pytest.MonkeyPatch):
    """A fake Hub serving the base model; huggingface_hub as a process with no offline flag sees it."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as hub:
        hub.add_model("org/base-model")
        yield hub


def run_case(case: Case, root: Path, request: pytest.FixtureRequest) -> list[Diagnostic]:
    write_project(case, root)
    if not case.online:
        cold = validate([str(root)], offline=True, environ=dict(case.environ)).diagnostics
        warm = validate([str(root)], offline=True, environ=dict(case.environ)).diagnostics
        assert warm == cold, f"a second run (parse cache warm) differs:\n{describe(cold)}\n--\n{describe(warm)}"
        return cold
    hub: FakeHub = request.getfixturevalue("online_hub")
    if case.hub is not None:
        case.hub(hub)
    environ = {"HF_ENDPOINT": hub.url, **case.environ}
    return validate([str(root)], offline=False, environ=environ).diagnostics


def describe(diags: list[Diagnostic]) -> str:
    return "\n".join(f"  {d.code} {d.severity} {d.location} {d.summary}" for d in diags) or "  (none)"


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_rule(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if isinstance(case.text, str) and MARK in case.text:
        marked = [n for n, text in enumerate(case.text.splitlines(), 1) if MARK in text]
        assert marked == [case.line], f"the {MARK} marker is on line(s) {marked}, the case says {case.line}"
    root = tmp_path / "project"
    diags = run_case(case, root, request)
    shown = describe(diags)

    expected_file = str(root / case.file) if case.file is not None else None
    hits = [
        d
        for d in diags
        if d.code == case.code
        and (d.location.file if d.location is not None else None) == expected_file
    ]
    assert hits, f"{case.code} not raised in {case.file}; got:\n{shown}"
    assert {d.severity for d in hits} == {RULES[case.code].severity}, shown
    lines = [(d.location.line or None) if d.location is not None else None for d in hits]
    assert case.line in lines, f"{case.code} at line(s) {lines}, expected {case.line}:\n{shown}"

    allowed = {case.code, "ON-001", *case.also}
    assert {d.code for d in diags} <= allowed, f"unexpected codes besides {case.code}:\n{shown}"
    assert set(case.also) <= {d.code for d in diags}, f"expected also {case.also}:\n{shown}"


def test_other_yaml_named_on_the_command_line_is_checked_as_manifests(tmp_path: Path) -> None:
    """Only files found by walking a folder are skipped as other YAML; a file named explicitly
    is read as manifests, so a manifest missing both apiVersion and kind is still an error."""
    path = tmp_path / "workflow.yaml"
    path.write_text("name: ci\non: [push]\n")
    assert [d.code for d in validate([str(path)], offline=True, environ={}).diagnostics] == ["LD-009"]
    folder = validate([str(tmp_path)], offline=True, environ={}).diagnostics
    assert sorted(d.code for d in folder) == ["LD-012", "LD-013"], "a folder of other YAML holds no manifests"


# Inputs that once slipped past a rule (or hit the wrong one), found while writing the table; kept
# as regressions, each with what was wrong.
REGRESSIONS: list[tuple[Case, str]] = [
    (Case("NM-003", """
        apiVersion: ftctl/v1
        kind: Dataset
        metadata: {name: "data\\n"}  # <-- a trailing newline is a control character
        spec: {type: project_csv, location: data.csv}
        """, line=3),
     "rules/names.py NAME_RE ends in $, which also matches before a final newline; use fullmatch or \\Z"),
    (Case("FT-002", """
        apiVersion: ftctl/v1
        kind: FineTuningJob
        metadata: {name: job}
        spec:
          base_model: base-model
          dataset: base-data
          prompt: base-prompt
          adapter_name: |  # <-- 'my-adapter\\n' does not match ^[a-zA-Z0-9-]+$ as a whole
            my-adapter
        """, line=8),
     "rules/jobs.py ADAPTER_NAME_RE.match accepts a trailing newline ($ matches before it); use fullmatch"),
    (Case("SC-001", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: huggingface
          huggingface_model_name: org/other-model
          tokenizer: org/base-tokenizer  # <-- an unknown field, not a written secret
        """, line=7),
     "manifests/schema_errors.py: any unknown key containing 'token' is SC-004, so a typo gets no "
     "'did you mean' (hf_token_envv) and a field like tokenizer is called a secret"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.code) for c, _ in REGRESSIONS])
def test_rule_regression(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    test_rule(case, tmp_path, request)


# SC-004 is reached by several paths (rules/secrets.py), one case each: a literal in a config body, at
# any depth, in a body written as text, in a URL's userinfo, and as the value of hf_token_env.
SECRET_CASES: dict[str, tuple[Case, str]] = {  # name -> (case, the secret it writes)
    "config-body": (Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: training}
        spec:
          type: training_arguments
          config: {num_train_epochs: 1, hub_token: hf_abcdefghijklmnopqrstu}  # <--
        """, line=6), "hf_abcdefghijklmnopqrstu"),
    "nested": (Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: training}
        spec:
          type: training_arguments
          config:
            deepspeed: {zero_optimization: {stage: 2, api_key: not-a-reference}}  # <--
        """, line=7), "not-a-reference"),
    "axolotl-text": (Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: axolotl}
        spec:
          type: axolotl
          config: |  # <-- positions stop at the text; the message names wandb_api_key
            base_model: org/base-model
            wandb_api_key: 0123456789abcdef
        """, line=6), "0123456789abcdef"),
    "url-credentials": (Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: project
          location: https://user:password@models.example.com/base  # <--
        """, line=6, also=("MD-104",)), "password"),
    "token-in-hf_token_env": (Case("SC-004", """
        apiVersion: ftctl/v1
        kind: Model
        metadata: {name: model}
        spec:
          type: huggingface
          huggingface_model_name: org/gated-model
          hf_token_env: hf_abcdefghijklmnopqrstu  # <-- a token, not a variable's name
        """, line=7), "hf_abcdefghijklmnopqrstu"),
}


@pytest.mark.parametrize("name", list(SECRET_CASES))
def test_secret_is_named_never_written(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case, secret = SECRET_CASES[name]
    test_rule(case, tmp_path, request)
    shown = describe(validate([str(tmp_path / "project")], offline=True, environ={}).diagnostics)
    assert secret not in shown, f"a diagnostic shows the secret:\n{shown}"


def test_base_project_is_valid(tmp_path: Path) -> None:
    shutil.copytree(BASE, tmp_path, dirs_exist_ok=True)
    report = validate([str(tmp_path)], offline=True, environ={})
    assert [(d.code, d.severity) for d in report.diagnostics] == [("ON-001", Severity.INFO)], describe(
        report.diagnostics
    )
    assert sorted(m.address for m in report.manifests) == [
        "Config/base-generation",
        "Config/base-lora",
        "Config/base-training",
        "Dataset/base-data",
        "EvaluationJob/base-eval",
        "FineTuningJob/base-job",
        "Model/base-model",
        "ModelExport/base-export",
        "Prompt/base-prompt",
    ]


def test_base_project_is_valid_online(tmp_path: Path, online_hub: FakeHub) -> None:
    shutil.copytree(BASE, tmp_path, dirs_exist_ok=True)
    report = validate([str(tmp_path)], offline=False, environ={"HF_ENDPOINT": online_hub.url})
    assert report.diagnostics == []


def test_every_rule_has_a_case() -> None:
    cased = [c.code for c in CASES]
    assert len(cased) == len(set(cased)), "one case per code"
    assert set(cased) <= set(RULES), f"cases for codes not in the catalog: {set(cased) - set(RULES)}"
    assert not set(cased) & set(UNREACHABLE), "a code with a case is reachable"
    missing = set(RULES) - set(cased) - set(UNREACHABLE)
    assert not missing, f"rules without a case in CASES: {sorted(missing)}"


# ------------------------------------------------------------- RF-003: reference cycles, directly


def test_reference_fields_cannot_form_a_cycle() -> None:
    """Why RF-003 has no YAML case: every reference points at a kind of lower rank, and a reference
    to a trained adapter becomes an edge to its FineTuningJob (rank 3), still below its referrers."""
    from reconciler.graph import REFERENCE_FIELDS

    rank = {
        "Dataset": 0,
        "Model": 0,
        "Prompt": 1,
        "Config": 1,
        "FineTuningJob": 2,
        "Adapter": 3,
        "EvaluationJob": 4,
        "ModelExport": 5,
    }
    for kind, fields in REFERENCE_FIELDS.items():
        for path, target in fields:
            assert rank[target] < rank[kind], f"{kind}.{'.'.join(path)} -> {target} could close a cycle"
            if target == "Adapter":  # may resolve to the FineTuningJob that trains it
                assert rank["FineTuningJob"] < rank[kind]


def test_find_cycles_names_each_cycle_once() -> None:
    from reconciler.graph import Graph, find_cycles

    a, b, c, d, e = (("Config", n) for n in "abcde")
    graph = Graph(
        nodes=(a, b, c, d, e),
        edges={a: (b,), b: (c,), c: (a,), d: (d,), e: (a,)},  # a->b->c->a, d->d, e only behind a cycle
    )
    assert find_cycles(graph) == [[a, b, c], [d]]
    assert find_cycles(Graph(nodes=(a, b), edges={a: (b,), b: ()})) == []


def test_check_cycles_reports_rf003_at_the_first_object(tmp_path: Path) -> None:
    import reconciler.rules as rules
    from reconciler.graph import Graph
    from reconciler.manifests import load_paths

    shutil.copytree(BASE, tmp_path, dirs_exist_ok=True)
    loaded = load_paths([str(tmp_path)])
    job, prompt = ("FineTuningJob", "base-job"), ("Prompt", "base-prompt")
    cyclic = Graph(nodes=(job, prompt), edges={job: (prompt,), prompt: (job,)})
    ctx = rules.RuleContext(loaded.manifests)
    ctx.graph = cyclic  # the manifests' own graph is acyclic: one the loader cannot build
    [diag] = rules.check_cycles(ctx)
    assert (diag.code, diag.severity) == ("RF-003", RULES["RF-003"].severity)
    assert diag.address == "FineTuningJob/base-job"
    assert diag.summary == "reference cycle: FineTuningJob/base-job -> Prompt/base-prompt -> FineTuningJob/base-job"
    assert diag.location is not None and diag.location.file == str(tmp_path / "base.yaml")
    assert diag.location == loaded.manifests[[m.address for m in loaded.manifests].index(diag.address)].location


def test_a_config_body_without_its_schema_is_cf107_never_a_silent_pass(tmp_path: Path) -> None:
    import reconciler.rules as rules
    from reconciler.manifests import load_paths

    (tmp_path / "case.yaml").write_text(dedent("""
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: lora}
        spec:
          type: lora_config
          config: {r: 8, lora_alpah: 16}
        ---
        apiVersion: ftctl/v1
        kind: Config
        metadata: {name: free-form}
        spec:
          type: custom
          config: {anything: goes}
        """).lstrip("\n"), encoding="utf-8")
    loaded = load_paths([str(tmp_path)])
    ctx = rules.RuleContext(loaded.manifests, body_schemas={})  # what an install without its schemas loads
    [diag] = rules.check_configs(ctx)
    assert (diag.code, diag.severity, diag.address) == ("CF-107", RULES["CF-107"].severity, "Config/lora")
    assert diag.summary == "lora_config body cannot be checked: ftctl's schema for it (lora_config.schema.json) is missing"
    assert diag.location is not None and diag.location.file == str(tmp_path / "case.yaml")
