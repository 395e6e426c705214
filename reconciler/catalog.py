"""The rule catalog: every diagnostic code ftctl can emit, with its severity, title and hint.

Codes of the Studio's own Validation Rules Reference keep their numbers (FT-001…EX-005). Rules the
Studio lacks get codes of their own: numbers from 101 in the Studio's domains, and the LD (loading),
SC (schema), RF (references), NM (names), SW (sweeps), ON (online checks) and PO (the policy gates of ftctl.toml) domains. A code, once published, is
never reused for another meaning. Pure data; `make_diag` is the one way to build a diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.diagnostics import Diagnostic, Location, Severity
from reconciler.secrets import redact_text

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    title: str
    hint: str
    studio: bool  # True for the Studio's own rule catalog


_RULES: list[Rule] = [
    # --- the Studio's fine-tuning job rules ---
    Rule("FT-001", E, "framework_type must be legacy or axolotl", "Set framework_type: legacy (trl SFTTrainer) or axolotl.", True),
    Rule("FT-002", E, "adapter_name must match ^[a-zA-Z0-9-]+$", "Use letters, digits and hyphens only, e.g. bloom-ticketing-v2.", True),
    Rule("FT-003", E, "out_dir must exist as a directory", "Create the directory, or leave out_dir unset to use the backend's default.", True),
    Rule("FT-004", E, "resources.cpu must be > 0", "Ask for at least one CPU, e.g. resources: {cpu: 2}.", True),
    Rule("FT-005", E, "resources.gpu must be >= 0", "Use 0 for CPU-only training.", True),
    Rule("FT-006", E, "resources.memory must be > 0", "Memory is in GB, e.g. resources: {memory: 16}.", True),
    Rule("FT-007", E, "resources.num_workers must be > 0", "Use 1 for single-worker training.", True),
    Rule("FT-008", E, "num_epochs must be > 0", "Train for at least one epoch.", True),
    Rule("FT-009", E, "learning_rate must be > 0", "A typical LoRA learning rate is 2e-4.", True),
    Rule("FT-010", E, "dataset_fraction must be in (0, 1]", "1.0 uses the whole dataset; 0.1 uses a tenth.", True),
    Rule("FT-011", E, "train_test_split must be in (0, 1]", "0.9 trains on 90% and keeps 10% for evaluation.", True),
    Rule("FT-012", E, "axolotl jobs require axolotl_config", "Name an axolotl Config, or give the axolotl YAML inline.", True),
    Rule("FT-013", E, "base_model must exist", "Declare a Model manifest with this name, or reference a store id.", True),
    Rule("FT-014", E, "dataset must exist", "Declare a Dataset manifest with this name, or reference a store id.", True),
    Rule("FT-015", E, "prompt must exist", "Declare a Prompt manifest with this name, or reference a store id.", True),
    Rule("FT-016", E, "axolotl_config must exist", "Declare a Config of type axolotl with this name.", True),
    # --- ftctl's fine-tuning job rules ---
    Rule("FT-101", E, "legacy jobs need a prompt", "The Studio accepts a legacy job without a prompt and the job then fails; set prompt:.", False),
    Rule("FT-102", W, "train_test_split 1.0 leaves no test split", "Training and evaluation need a test split unless the dataset has one; use 0.9.", False),
    Rule("FT-103", E, "dataset_fraction leaves the training split empty", "The local dataset has too few rows for this fraction and split; raise dataset_fraction.", False),
    Rule("FT-106", E, "user_script must exist as a file", "user_script is relative to the manifest file; point it at the training script.", False),
    Rule("FT-105", W, "axolotl jobs ignore legacy configs", "lora_config, bnb_config and training_arguments are not used by axolotl; put them in the axolotl YAML.", False),
    Rule("FT-107", E, "this job cannot run on several processes", "framework_type axolotl runs as one process here (Axolotl scales out itself): use resources.num_workers 1 and resources.gpu <= 1, or framework_type legacy.", False),
    Rule("FT-108", E, "more training processes than GPUs", "Each worker runs one process per GPU of worker 0 (resources.gpu): give the other workers as many (resources.dist_gpu, default resources.gpu), or none at all on CPU-only jobs.", False),
    Rule("FT-109", E, "4-bit quantization with FSDP needs bnb_4bit_quant_storage", "FSDP cannot shard 4-bit weights stored as uint8: set bnb_4bit_quant_storage to the compute dtype (e.g. bfloat16) in the bitsandbytes config, or drop fsdp.", False),
    Rule("FT-110", E, "FSDP needs GPUs", "training_arguments.fsdp shards the model across GPUs; CPU-only jobs (resources.gpu 0) train data-parallel without it: drop fsdp, or ask for GPUs.", False),
    # --- the Studio's evaluation job rules ---
    Rule("EV-001", E, "combinations must be non-empty", "List at least one {model: NAME, adapter: NAME} pair.", True),
    Rule("EV-002", E, "dataset is required", "Name the Dataset to evaluate on.", True),
    Rule("EV-003", E, "prompt is required", "Name the Prompt whose templates build inputs and expected outputs.", True),
    Rule("EV-004", E, "resources cpu, gpu and memory must be provided and valid", "e.g. resources: {cpu: 2, gpu: 0, memory: 8}; cpu and memory > 0, gpu >= 0.", True),
    Rule("EV-005", E, "combination model must exist", "Declare a Model manifest with this name, or reference a store id.", True),
    Rule("EV-006", E, "combination adapter must exist", "Name an Adapter or the adapter_name of a FineTuningJob; leave adapter out to evaluate the base model.", True),
    Rule("EV-007", E, "dataset must exist", "Declare a Dataset manifest with this name, or reference a store id.", True),
    Rule("EV-008", E, "prompt must exist", "Declare a Prompt manifest with this name, or reference a store id.", True),
    # --- ftctl's evaluation job rules ---
    Rule("EV-101", E, "combinations must be distinct", "Each model+adapter pair runs once; remove the repeated pair.", False),
    Rule("EV-102", E, "combination adapter belongs to another base model", "An adapter only applies to the model it was trained on; pair it with that model.", False),
    Rule("EV-103", E, "eval_dataset_fraction must be in (0, 1]", "1.0 evaluates the whole test split.", False),
    # --- the Studio's dataset rules ---
    Rule("DS-001", E, "dataset type must be one of huggingface, project, project_csv, project_json, project_jsonl", "Pick the type that matches where the data lives.", True),
    Rule("DS-002", E, "huggingface dataset must exist on the Hub", "Check the dataset id, and for a gated dataset set hf_token_env to a variable holding a token.", True),
    Rule("DS-003", E, "local dataset file must exist and match its type", "location is relative to the manifest file; a project_csv file ends in .csv, and so on.", True),
    # --- ftctl's dataset rules ---
    Rule("DS-101", E, "dataset type needs its identifying field", "huggingface datasets need huggingface_name; project datasets need location.", False),
    Rule("DS-102", E, "local dataset file cannot be read for its columns", "The file must be UTF-8 with a header row (CSV), an array of objects (JSON) or one object per line (JSONL).", False),
    # --- the Studio's model rules ---
    Rule("MD-001", E, "model type must be one of huggingface, project, model_registry", "Pick the type that matches where the weights live.", True),
    Rule("MD-002", E, "huggingface model must exist on the Hub", "Check the model id, and for a gated model set hf_token_env to a variable holding a token.", True),
    Rule("MD-003", E, "model_registry model needs a resolvable cml_registered_model_id", "Copy the registered model id from the CML Model Registry.", True),
    # --- ftctl's model rules ---
    Rule("MD-101", E, "model type needs its identifying field", "huggingface models need huggingface_model_name; project models need location.", False),
    Rule("MD-102", E, "project model location must be a directory", "location is relative to the manifest file and must hold config.json and the weights.", False),
    Rule("MD-103", E, "model_registry model id not found in the CML Model Registry (or it has no version)", "Copy the model id from the CML Model Registry; the Studio records the MLflow experiment and run of its first version. Checked by plan when the CML API is configured.", False),
    Rule("MD-104", W, "project model directory does not exist (yet)", "A model folder is often built or copied where jobs run and kept out of Git (make demo builds the demo's); a job that uses it fails until it exists there. location is relative to the manifest file.", False),
    # --- the Studio's adapter rules ---
    Rule("AD-001", E, "adapter name is required", "Set metadata.name.", True),
    Rule("AD-002", E, "adapter model is required and must exist", "Name the base Model this adapter was trained on.", True),
    Rule("AD-003", E, "project adapter location must be a directory", "location is relative to the manifest file.", True),
    Rule("AD-004", E, "fine_tuning_job must exist", "Name a FineTuningJob manifest or reference a store id; or leave it out.", True),
    Rule("AD-005", E, "prompt must exist", "Name a Prompt manifest or reference a store id; or leave it out.", True),
    # --- ftctl's adapter rules ---
    Rule("AD-101", E, "adapter type needs its identifying field", "project adapters need location; huggingface adapters need huggingface_name; model_registry adapters need cml_registered_model_id.", False),
    Rule("AD-102", E, "project adapter directory must hold adapter_config.json", "A PEFT adapter directory holds adapter_config.json and the adapter weights; point location at one.", False),
    Rule("AD-103", E, "model_registry adapter id not found in the CML Model Registry (or it has no version)", "Copy the model id from the CML Model Registry; the Studio records the MLflow experiment and run of its first version. Checked by plan when the CML API is configured.", False),
    # --- the Studio's prompt rules ---
    Rule("PR-001", E, "prompt name is required and unique", "Set metadata.name to a name no other Prompt uses.", True),
    Rule("PR-002", E, "prompt dataset is required", "Name the Dataset whose columns the templates use.", True),
    Rule("PR-003", E, "prompt_template is required and non-empty", "e.g. 'Instruction: {instruction}\\nOutput: {output}'.", True),
    Rule("PR-004", E, "input_template is required", "The input part of the prompt, used by evaluation.", True),
    Rule("PR-005", E, "completion_template is required", "The expected-output part, used by evaluation.", True),
    # --- ftctl's prompt rules ---
    Rule("PR-101", E, "template placeholder is not a feature of the prompt's dataset", "Placeholders must name dataset columns; check spelling and case.", False),
    Rule("PR-102", E, "template is not a valid format string", "Use {column} placeholders; write {{ and }} for literal braces.", False),
    # --- the Studio's config rules ---
    Rule("CF-001", E, "config type must be a ConfigType value", "One of training_arguments, bitsandbytes_config, generation_config, lora_config, custom, axolotl, axolotl_dataset_formats.", True),
    Rule("CF-002", E, "config must be valid JSON", "Write the config as a YAML mapping, or as a JSON object string.", True),
    Rule("CF-003", E, "axolotl config must be valid YAML", "Write the axolotl config as a YAML mapping or a YAML block string.", True),
    Rule("CF-004", I, "config content duplicates another config", "The Studio stores identical configs once; both names will share one row.", True),
    # --- ftctl's config rules ---
    Rule("CF-101", E, "config key is not accepted by the target library", "Keys must be arguments of the library class (see schemas/config-bodies/).", False),
    Rule("CF-102", E, "config value has the wrong type for the target library", "See the key's type in schemas/config-bodies/.", False),
    Rule("CF-103", E, "config body is required and must be a mapping", "Write the config's fields as a YAML mapping under config:.", False),
    Rule("CF-105", W, "config key is a legacy key the pinned library no longer accepts", "The job runner translates it (e.g. warmup_ratio becomes warmup_steps below 1); prefer the new key.", False),
    Rule("CF-106", E, "bitsandbytes config loads in 4-bit and 8-bit at once", "BitsAndBytesConfig refuses both; set only one of load_in_4bit and load_in_8bit.", False),
    Rule("CF-107", E, "config body cannot be checked: ftctl's schema for its type is missing", "The schemas ship inside the package (reconciler/_schemas/): reinstall ftctl from a wheel built from the repository, or run `make schemas` in a checkout.", False),
    Rule("CF-104", E, "config reference has the wrong config type", "Point lora_config at a lora_config Config, bnb_config at a bitsandbytes_config Config, and so on.", False),
    # --- the Studio's export rules ---
    Rule("EX-001", E, "export base_model is required and must exist", "Name the base Model.", True),
    Rule("EX-002", E, "export adapter is required and must exist", "Name an Adapter or the adapter_name of a FineTuningJob.", True),
    Rule("EX-003", E, "export model_name must be non-empty", "Leave model_name out to use metadata.name.", True),
    Rule("EX-004", E, "cml_model export needs a project adapter", "Export huggingface or registry adapters with type: model_registry.", True),
    Rule("EX-005", E, "cml_model export needs a huggingface base model", "Export other models with type: model_registry.", True),
    # --- ftctl's export rules ---
    Rule("EX-101", E, "export gate must name an evaluation that evaluates the exported adapter", "gate: {evaluation: NAME, metric: M, min: X}, where NAME evaluates this adapter.", False),
    Rule("EX-102", E, "export type must be model_registry or cml_model", "model_registry logs to the MLflow registry; cml_model deploys a CML endpoint.", False),
    Rule("EX-103", W, "export adapter was trained on another base model", "An adapter only applies to the model it was trained on: export it with that model, unless both hold the same weights (a local copy of a Hub model).", False),
    Rule("EX-104", E, "endpoint resources must be valid", "cpu and memory > 0, gpu >= 0, e.g. resources: {cpu: 2, memory: 8, gpu: 1}.", False),
    Rule("EX-105", E, "export gate can never pass", "Use finite thresholds, with min <= max when both are set.", False),
    Rule("EX-106", E, "gate metric is not one an evaluation reports", "Evaluations report exact_match, rougeL, latency_s and rows (as <label>.<metric> when they evaluate several combinations).", False),
    Rule("EX-107", E, "export names both adapter and select", "Give adapter for one adapter, or select: {evaluation: NAME, metric: M, mode: max} to export the best one an evaluation scored.", False),
    Rule("EX-108", E, "select must name an EvaluationJob that evaluates adapters, and a metric it reports", "select: {evaluation: NAME, metric: rougeL, mode: max}, where NAME evaluates adapters (e.g. combinations: [{sweep: JOB}]).", False),
    # --- sweeps (a FineTuningJob's matrix) ---
    Rule("SW-001", E, "matrix key is not a setting a trial can vary", "Keys are dotted paths into the spec: learning_rate, training_arguments.learning_rate, lora_config.r, resources.gpu, dataset, base_model; adapter_name, out_dir and recorded runs are fixed per sweep.", False),
    Rule("SW-002", E, "matrix values must be a non-empty list of distinct plain values", "e.g. matrix: {lora_config.r: [4, 8], training_arguments.learning_rate: [1.0e-3, 1.0e-2]}.", False),
    Rule("SW-003", E, "matrix value does not fit its setting", "The value must be valid where the key puts it (the field's type and bounds).", False),
    Rule("SW-004", E, "two trials would get the same name", "Trial names are <job>-<slug of the values>; use values that differ in letters or digits (not only in punctuation).", False),
    Rule("SW-005", E, "sweep must name a FineTuningJob", "combinations: [{sweep: JOB}] evaluates every trial of the FineTuningJob JOB.", False),
    Rule("SW-006", E, "combination names both adapter and sweep", "Give adapter for one adapter, or sweep for every trial of a sweep.", False),
    Rule("SW-007", E, "matrix varies a config ftctl cannot read", "Vary keys of an inline config body or of a Config manifest in the same project; a store config ({id: ...}) is fixed.", False),
    Rule("SW-008", E, "matrix makes too many trials", "Each trial is a training run: split the sweep, or drop values.", False),
    Rule("SW-009", E, "a sweep cannot take over a Studio row", "ftctl.io/store-id names one row; a sweep makes one job per trial. Remove the annotation.", False),
    # --- loading ---
    Rule("LD-001", E, "file is not valid UTF-8", "Save the file as UTF-8.", False),
    Rule("LD-002", E, "YAML syntax error", "Check indentation (spaces only, never tabs), quotes and colons near this position.", False),
    Rule("LD-003", E, "duplicate key", "A key may appear once per mapping; the Studio would silently keep only the last one.", False),
    Rule("LD-004", E, "YAML tags are not allowed", "Remove the !tag; manifests use plain YAML values only.", False),
    Rule("LD-005", E, "YAML anchors and aliases expand too far", "Aliases may not expand past the size limit; write the values out.", False),
    Rule("LD-006", E, "file is too large", "Split the manifests into several files.", False),
    Rule("LD-007", E, "document is not a mapping", "Each YAML document is one manifest: apiVersion, kind, metadata, spec.", False),
    Rule("LD-008", E, "path cannot be read", "Check the path exists and is readable.", False),
    Rule("LD-009", E, "unsupported apiVersion", "Use apiVersion: ftctl/v1.", False),
    Rule("LD-010", E, "unknown kind", "One of Dataset, Model, Adapter, Prompt, Config, FineTuningJob, EvaluationJob, ModelExport.", False),
    Rule("LD-011", E, "document nests too deeply", "Manifests never need more than a few levels; flatten the value.", False),
    Rule("LD-012", W, "no manifests found", "Pass files or folders holding .yaml/.yml manifests.", False),
    Rule("LD-013", I, "other YAML skipped", "A file found in a folder whose documents have neither apiVersion nor kind is not read as manifests; name it on the command line to check it as one.", False),
    Rule("LD-014", E, "path is outside the project root", "ftctl reads only files inside the project (the nearest folder holding ftctl.toml, else .git, else the manifests' folder); a symlink may point inside it. For data on a shared mount, add its folder to FTCTL_READ_ROOTS or read_roots in ftctl.toml.", False),
    Rule("LD-015", E, "path is not a regular file", "Point at a regular file (a model or adapter location at a folder): never a FIFO, device or socket, nor a symlink to one.", False),
    Rule("LD-016", E, "file named by a manifest is too large to read", "ftctl reads at most 4 MiB of a model's or adapter's config and 64 MiB of a JSON dataset; check the path names the right file.", False),
    # --- schema ---
    Rule("SC-001", E, "unknown field", "Check the spelling; `ftctl schema` writes JSON Schemas your editor can complete from.", False),
    Rule("SC-002", E, "invalid value", "See the field's type in schemas/manifest.schema.json.", False),
    Rule("SC-003", E, "required field is missing", "Add the field.", False),
    Rule("SC-004", E, "secrets must be named, never written", "Put the secret in an environment variable and name it, e.g. hf_token_env: HUGGINGFACE_ACCESS_TOKEN.", False),
    Rule("SC-005", E, "integer does not fit in 64 bits", "The Studio store keeps signed 64-bit integers (up to 9223372036854775807); use a realistic value.", False),
    # --- references ---
    Rule("RF-001", E, "reference does not resolve", "Declare an object of that kind and name, or reference a store id with {id: UUID}.", False),
    Rule("RF-002", E, "reference points at an object of another kind", "Names are unique per kind; this name exists only as another kind.", False),
    Rule("RF-003", E, "reference cycle", "Objects cannot depend on themselves, directly or through others.", False),
    Rule("RF-004", I, "store id reference not checked", "Pass --store to check {id: ...} references against the Studio store.", False),
    # --- names ---
    Rule("NM-001", E, "name is used twice in one kind", "metadata.name is unique per kind; rename one of them.", False),
    Rule("NM-002", E, "adapter name clashes with another adapter or job", "A FineTuningJob's adapter_name must differ from every Adapter name and every other job's adapter_name.", False),
    Rule("NM-004", E, "a Hub model or dataset is registered twice", "The Studio registers each huggingface_model_name / huggingface_name once; declare it in one manifest and reference that.", False),
    Rule("NM-003", E, "metadata.name is not a valid name", "Names are 1-256 characters with no control characters and no leading or trailing spaces (the Studio's own names, like bigscience/bloom-1b1, are fine).", False),
    Rule("NM-005", E, "ftctl.io/store-id annotation is not a store id", "Store ids are UUIDs, as `ftctl import` writes them; remove the annotation to let ftctl create the row.", False),
    Rule("NM-006", W, "unknown ftctl.io/ annotation", "ftctl reads ftctl.io/protected and ftctl.io/store-id; a misspelt key is ignored (an object meant to be protected is not).", False),
    Rule("NM-007", W, "name has invisible or unnormalised characters", "Bidi controls, zero-width characters and non-NFC forms make different names look the same; retype the name.", False),
    Rule("NM-008", W, "name looks like another name of the same kind", "The two differ only in look-alike letters (e.g. Cyrillic 'а' and Latin 'a'); rename one.", False),
    # --- online checks ---
    Rule("ON-001", I, "online check skipped", "Run without --offline (and with network access to the Hub) to check Hub names.", False),
    Rule("ON-002", W, "online check could not complete", "The Hub answered with a server error or could not be reached; run validate again.", False),
    Rule("ON-003", E, "secret environment variable is not set", "Export the variable named by hf_token_env before running online checks.", False),
    # --- policy ([policy] in ftctl.toml): `plan` blocks on them (exit 3), `validate` reports the manifests' ---
    Rule("PO-001", E, "the plan takes more GPU-hours than policy max_gpu_hours", "Launch fewer or smaller jobs, raise [policy] max_gpu_hours, or apply with --override-policy max_gpu_hours --reason TEXT.", False),
    Rule("PO-002", E, "the plan costs more than policy max_cost", "Launch fewer or smaller jobs, raise [policy] max_cost, or apply with --override-policy max_cost --reason TEXT.", False),
    Rule("PO-003", E, "a job asks for more GPUs than policy max_gpus", "Lower resources.gpu (and dist_gpu, num_workers), or raise [policy] max_gpus.", False),
    Rule("PO-004", E, "a job asks for more workers than policy max_workers", "Lower num_workers, or raise [policy] max_workers.", False),
    Rule("PO-005", E, "a base model policy allowed_base_models does not list", "Use a listed model (its manifest name or Hub id), or add it to [policy] allowed_base_models.", False),
    Rule("PO-006", E, "a backend policy allowed_backends does not allow", "Set backend: to an allowed one (or FTCTL_BACKEND / backend in ftctl.toml), or add it to [policy] allowed_backends.", False),
    Rule("PO-007", E, "an export without an evaluation gate (policy export_requires_gate)", "Add gate: {evaluation: NAME, metric: NAME, min: VALUE} (or select:) to the ModelExport.", False),
]

RULES: dict[str, Rule] = {r.code: r for r in _RULES}


def make_diag(
    code: str,
    summary: str | None = None,
    *,
    location: Location | None = None,
    address: str | None = None,
    detail: str | None = None,
    hint: str | None = None,
    severity: Severity | None = None,
) -> Diagnostic:
    """Build a diagnostic for a catalogued rule; the summary defaults to the rule's title. Text that
    may quote a value the user wrote is redacted (`reconciler.secrets`): no diagnostic echoes a secret."""
    rule = RULES[code]
    return Diagnostic(
        code=code,
        severity=severity or rule.severity,
        summary=redact_text(summary or rule.title),
        location=location,
        address=address,
        hint=hint if hint is not None else rule.hint,
        detail=redact_text(detail) if detail else detail,
    )
