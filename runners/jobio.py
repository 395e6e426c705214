"""What every runner shares: reading the job input, progress and result files, error classes.

Runners (`train.py`, `evaluate.py`, `export.py`) are programs that run inside a job, locally or on
CML. They never import ftctl: the job-input and job-result JSON (schemas in `schemas/`) are the
only link. A runner is started as `python runners/<kind>.py --input job.json` (or with the input
in `FTCTL_JOB_INPUT`, as a path or as the JSON itself), writes progress while it works, and always
ends by writing its result file, success or failure. Stdlib only at import, so importing this is
instant; loading a dataset (shared by training and evaluation) imports `datasets` when called.
"""

from __future__ import annotations

import json
import os
import signal
import string
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # imported as runners.jobio (tests); run as a program, its own folder is first on sys.path
    from runners.distributed import World, die_with_launcher
except ImportError:
    from distributed import World, die_with_launcher  # type: ignore[no-redef]

CONTRACT_VERSION = 1
REFERENCE_KEY = "from_env"  # `{from_env: NAME}`: a secret named in a config body, resolved at run time
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",  # MLflow compares with the lowercase string "true"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_GENAI_EVAL_MAX_WORKERS": "2",
    "TOKENIZERS_PARALLELISM": "false",
    "DISABLE_MLFLOW_INTEGRATION": "TRUE",  # runners log to MLflow themselves, once
}


class JobFailure(Exception):  # noqa: N818 (a failure of the job, reported as its result; not an error of ours)
    """A failure the runner understands, with the class the retry loop decides on."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def prepare_environment(job: dict[str, Any]) -> None:
    """Before any ML import: offline unless the job names Hub sources; one thread per process."""
    uses_hub = any(
        (src or {}).get("type") == "huggingface"
        for src in [job.get("model"), job.get("dataset"), *[c.get("model") for c in (job.get("evaluate") or {}).get("candidates", [])]]
    )
    for key, value in OFFLINE_ENV.items():
        if key.endswith("OFFLINE") and uses_hub and not os.environ.get("FTCTL_FORCE_OFFLINE"):
            continue
        os.environ.setdefault(key, value)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def read_input(argv: list[str]) -> dict[str, Any]:
    """The job input from `--input PATH` or FTCTL_JOB_INPUT (a path or the JSON itself), checked."""
    source = None
    if "--input" in argv:
        source = Path(argv[argv.index("--input") + 1]).read_text(encoding="utf-8")
    elif os.environ.get("FTCTL_JOB_INPUT"):
        value = os.environ["FTCTL_JOB_INPUT"]
        source = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    if source is None:
        raise SystemExit("usage: <runner>.py --input JOB.json   (or set FTCTL_JOB_INPUT)")
    job = json.loads(source)
    _check(job, "job-input.schema.json")
    return job


def _check(document: dict[str, Any], schema_name: str) -> None:
    try:
        import jsonschema
    except ImportError:  # a bare job image: the contract version is still checked
        jsonschema = None
    if document.get("contract_version") != CONTRACT_VERSION:
        raise SystemExit(f"job contract version {document.get('contract_version')!r}; this runner reads {CONTRACT_VERSION}")
    schema_path = SCHEMAS / schema_name
    if jsonschema is not None and schema_path.is_file():
        errors = sorted(jsonschema.Draft202012Validator(json.loads(schema_path.read_text())).iter_errors(document), key=str)
        if errors:
            first = errors[0]
            raise SystemExit(f"job input does not match {schema_name}: {'/'.join(map(str, first.path))}: {first.message}")


def write_json_atomic(path: str | Path, value: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


class Progress:
    """The job's progress file: step, total steps, epoch, loss, and an ETA from the rate so far."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.started = time.time()
        self.last: dict[str, Any] = {}

    def update(self, *, stage: str, step: int | None = None, total: int | None = None, epoch: float | None = None,
               loss: float | None = None, **extra: Any) -> None:
        """Write the progress; values not given keep what the last update said (a final stage keeps the count)."""
        step = self.last.get("step", 0) if step is None else step
        total = self.last.get("total_steps", 0) if total is None else total
        epoch = self.last.get("epoch") if epoch is None else epoch
        loss = self.last.get("loss") if loss is None else loss
        self.last = {"step": step, "total_steps": total, "epoch": epoch, "loss": loss}
        elapsed = time.time() - self.started
        eta = (elapsed / step) * (total - step) if step and total and step <= total else None
        write_json_atomic(self.path, {
            "stage": stage, "step": step, "total_steps": total, "epoch": epoch, "loss": loss,
            "elapsed_s": round(elapsed, 2), "eta_s": round(eta, 1) if eta is not None else None,
            "updated_at": time.time(), **extra,
        })


def template_fields(template: str, what: str = "prompt_template") -> list[str]:
    """The column names a template uses (`{name}`, `{name!r}`, `{name:>10}`, `{name[0]}`); `what`
    names the template in errors (a `data` failure)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise JobFailure("data", f"{what} is not a valid format string: {exc}") from exc
    fields = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if not name or name.isdigit():
            raise JobFailure("data", f"{what} uses a positional placeholder {{{field}}}; name a column instead")
        fields.append(name)
    return fields


def load_model(base: str, adapter: str | None, token: str | None, **model_kwargs: Any) -> tuple[Any, str, Any]:
    """(model, where its tokenizer comes from, tokenizer) for a base model with an optional LoRA
    adapter; the tokenizer is the one saved beside the adapter (with its pad token) when there is
    one. A pad token falls back to the unknown or EOS token. Failures are `data` errors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer_from = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else base
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_from, token=token)
        model = AutoModelForCausalLM.from_pretrained(base, token=token, **model_kwargs)
    except OSError as exc:
        raise JobFailure("data", f"cannot load model {base}: {exc}") from exc
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise JobFailure("data", f"adapter {adapter} does not fit base model {base}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return model, tokenizer_from, tokenizer


def classify(exc: BaseException) -> str:
    """The error class of an exception a runner did not classify itself."""
    if isinstance(exc, JobFailure):
        return exc.error_class
    text = f"{type(exc).__name__}: {exc}".lower()
    if isinstance(exc, MemoryError) or "out of memory" in text or "cuda oom" in text:
        return "resources"
    if isinstance(exc, (ImportError, ModuleNotFoundError)):
        return "dependency"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError)):
        return "data"
    if isinstance(exc, (ConnectionError, TimeoutError)) or "connection" in text or "timed out" in text:
        return "transient"
    if isinstance(exc, (ValueError, TypeError, KeyError)):
        return "config"
    return "internal"


def simulated_failure(wanted: str | None) -> None:
    """Fail as a job of error class `wanted` would (tests; nothing when None). The runners' own hook
    is FTCTL_RUNNER_FAIL, read by `run`; it is no part of the job input, which is the published contract."""
    if not wanted:
        return
    if wanted == "resources":
        raise JobFailure("resources", "simulated out of memory: the job needs more memory than it was given")
    if wanted == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    raise JobFailure(wanted, f"simulated {wanted} failure")


class _Tee:
    """Writes to the stream and to the job's log file (a CML job's output otherwise stays in CML)."""

    def __init__(self, stream: Any, log: Any) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _log_to_job_folder(job: dict[str, Any]) -> None:
    """FTCTL_JOB_LOG=1 (set by the CML backend): also write the output to `<job dir>/log.txt`,
    where `ftctl logs` reads it (the local backend captures the output there itself)."""
    if os.environ.get("FTCTL_JOB_LOG") != "1":
        return
    folder = Path(job["outputs"]["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 - open for the job's whole life
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)


def run(kind: str, work: Callable[[dict[str, Any], Progress], tuple[dict[str, float], dict[str, Any]]]) -> int:
    """Read the input, do the work, always write the result; exit 0 on success, 1 on failure."""
    job = read_input(sys.argv[1:])
    if job["kind"] != kind:
        raise SystemExit(f"this is the {kind} runner; the input is for {job['kind']}")
    _log_to_job_folder(job)
    prepare_environment(job)
    started = time.time()
    world = World.from_environ()  # rank 0 writes the job's files; other ranks their own beside them
    die_with_launcher(world)
    progress = Progress(world.rank_path(job["outputs"]["progress"]))
    signal.signal(signal.SIGTERM, _terminated)
    try:
        progress.update(stage="starting")
        simulated_failure(os.environ.get("FTCTL_RUNNER_FAIL"))
        metrics, artifacts = work(resolve_references(job), progress)
        result = {"status": "succeeded", "metrics": metrics, "artifacts": artifacts, "error": None}
    except BaseException as exc:  # every failure becomes a result; the traceback goes to the log
        hidden = secret_values(job)  # a library may echo what it was given: a secret stays out of log and result
        print(masked(traceback.format_exc(), hidden), file=sys.stderr, end="", flush=True)
        error_class = "cancelled" if isinstance(exc, _Terminated) else classify(exc)
        message = masked(str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__, hidden)
        result = {"status": "failed", "metrics": {}, "artifacts": {},
                  "error": {"error_class": error_class, "type": type(exc).__name__, "message": message}}
    result = {"contract_version": CONTRACT_VERSION, "job_name": job["job_name"], **result,
              "started_at": started, "finished_at": time.time()}
    write_json_atomic(world.rank_path(job["outputs"]["result"]), result)
    progress.update(stage=result["status"])
    return 0 if result["status"] == "succeeded" else 1


class _Terminated(BaseException):
    pass


def _terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated("the job was stopped (SIGTERM)")


def open_experiment(mlflow: Any, tracking: dict[str, Any]) -> Any:
    """Point MLflow at the job's tracking store and experiment (created if missing, with its
    artifacts under `artifact_location`, not in whatever folder the job happens to run in).

    A local sqlite store is opened under a file lock: jobs started together on a fresh store would
    otherwise race to create its tables (alembic fails with "table ... already exists"), and to
    create the experiment."""
    uri = tracking["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    if tracking.get("registry_uri"):
        mlflow.set_registry_uri(tracking["registry_uri"])
    name = tracking.get("experiment") or "ftctl"
    lock = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):].split("?")[0])
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl

            lock = (db.parent / f".{db.name}.lock").open("a")
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no POSIX locks here: go on unserialized
            lock = None
    try:
        if tracking.get("artifact_location") and mlflow.get_experiment_by_name(name) is None:
            location = Path(tracking["artifact_location"]).resolve()
            location.mkdir(parents=True, exist_ok=True)
            try:
                mlflow.create_experiment(name, artifact_location=location.as_uri())
            except mlflow.exceptions.MlflowException as exc:  # created by another job meanwhile
                if "already exists" not in str(exc).lower():
                    raise
        try:
            return mlflow.set_experiment(name)
        except mlflow.exceptions.MlflowException as exc:  # created by another job meanwhile
            if "already exists" not in str(exc).lower():
                raise
            return mlflow.set_experiment(name)
    finally:
        if lock is not None:
            lock.close()  # releases the lock


# -- data sources every runner reads the same way (ML imports inside the functions) --------------------


def lineage_tags(job: dict[str, Any]) -> dict[str, str]:
    """The job input's lineage block as MLflow tags (`ftctl.lineage.<key>`, one per config digest):
    the same digests ftctl records in its `ftctl_lineage` table. {} for an input without one."""
    block = job.get("lineage") or {}
    tags = {f"ftctl.lineage.{key}": str(value) for key, value in block.items() if key != "config_digests"}
    tags.update({f"ftctl.lineage.config_digest.{key}": str(value) for key, value in (block.get("config_digests") or {}).items()})
    return tags


def resolve_references(value: Any) -> Any:
    """The job input with each secret reference, `{from_env: NAME}`, replaced by that variable's value.

    Config bodies name their secrets this way (a `hub_token`, an axolotl `wandb_api_key`); the value
    exists only in this process's memory, never in the input file, the store or a log."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(REFERENCE_KEY), str):
            name = value[REFERENCE_KEY]
            if not os.environ.get(name):
                raise JobFailure("config", f"a config names the secret {REFERENCE_KEY}: {name}, which is not set in this job's environment")
            return os.environ[name]
        return {k: resolve_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v) for v in value]
    return value


def secret_values(job: dict[str, Any]) -> list[str]:
    """The values, as set in this environment, of every secret the input names (references and
    `hf_token_env`), longest first; values under 4 characters are left out (masking them would
    garble ordinary text, and they protect nothing)."""
    values = {os.environ.get(name) or "" for name in _secret_names(job)}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _secret_names(value: Any) -> set[str]:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(REFERENCE_KEY), str):
            return {value[REFERENCE_KEY]}
        found = {str(v) for k, v in value.items() if k == "hf_token_env" and v}
        return found.union(*(_secret_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_secret_names(v) for v in value))
    return set()


def masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "(sensitive)")
    return text


def hf_token(source: dict[str, Any]) -> str | None:
    """The Hub token of a model or dataset source: the variable its `hf_token_env` names, if any."""
    name = source.get("hf_token_env")
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise JobFailure("config", f"hf_token_env names {name}, which is not set in this job's environment")
    return value


def load_data(source: dict[str, Any]) -> Any:
    """The dataset as a `DatasetDict` (a single file becomes its `train` split)."""
    import datasets

    kind, where = source["type"], source["name_or_path"]
    if kind == "huggingface":
        try:
            loaded = datasets.load_dataset(where, token=hf_token(source))
        except datasets.exceptions.DatasetNotFoundError as exc:
            raise JobFailure("data", f"dataset {where!r} not found on the Hugging Face Hub: {exc}") from exc
        return _as_dataset_dict(loaded)
    path = Path(where)
    if not path.exists():
        raise JobFailure("data", f"dataset {kind} not found: {path} does not exist")
    if kind == "project" and not path.is_dir():
        raise JobFailure("data", f"dataset project: {path} is not a directory (a saved Hugging Face dataset)")
    if kind != "project" and not path.is_file():
        raise JobFailure("data", f"dataset {kind}: {path} is not a file")
    try:
        if kind == "project":
            if any((path / name).is_file() for name in ("dataset_dict.json", "state.json")):
                return _as_dataset_dict(datasets.load_from_disk(str(path)))
            return _as_dataset_dict(datasets.load_dataset(str(path)))
        if kind == "project_csv":
            return _as_dataset_dict(datasets.load_dataset("csv", data_files=str(path)))
        return _as_dataset_dict(datasets.Dataset.from_json(str(path)))  # project_json, project_jsonl
    except JobFailure:
        raise
    except Exception as exc:  # a malformed file: the data's fault, not the runner's
        raise JobFailure("data", f"cannot read dataset {kind} {path}: {type(exc).__name__}: {exc}") from exc


def _as_dataset_dict(loaded: Any) -> Any:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise JobFailure("data", "the dataset has no splits")
        return loaded
    return datasets.DatasetDict({"train": loaded})
