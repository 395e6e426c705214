"""The train runner: LoRA supervised fine-tuning of a causal LM, as the Studio's training script does it.

A program, not a library: `python runners/train.py --input job.json` (or FTCTL_JOB_INPUT). It reads
a job input (schemas/job-input.schema.json, kind "train"), trains a PEFT LoRA adapter with trl's
`SFTTrainer`, saves it to `outputs.adapter_dir`, logs one MLflow run, and always ends by writing
its job result (schemas/job-result.schema.json) through `jobio.run`. Never imports ftctl.

The steps follow the Studio's `accel_fine_tune_base_script.py` and `ft/training/utils.py`:

1. load the dataset by type (Hub, saved project dataset, CSV, JSON, JSON lines);
2. format the `prediction` column (TRAINING_DATA_TEXT_FIELD): `prompt_template.format(**row)` plus
   the tokenizer's EOS token;
3. sample `dataset_fraction` of the rows, then split train/test at `train_test_split` with the job's
   seed (the Studio's TRAINING_DATASET_SEED, 42), keeping a `test` split the dataset already has;
4. give the tokenizer a pad token by the Studio's fallback chain: its own pad token, its unknown
   token, a vocabulary token containing "pad" or "reserved", and last (as trl does) its EOS token;
5. LoRA from `train.lora_config`, trainer settings from `train.training_arguments` (num_epochs and
   learning_rate overrides on top), trained with `SFTTrainer` on the `prediction` column;
6. save adapter and tokenizer; MLflow: one run named after the job, LoRA and trainer settings as
   params, the logged metrics at every logging step, the final figures at the end.

Checkpoints go to `<job dir>/checkpoints` every `save_steps` (runners/checkpoints.py); a retried
training resumes from the last one made from the same input, in the same MLflow run, and reports
`resumed_from_step` and the steps it really trained (`trained_steps`) in its progress and result.

Settings that cannot work on the machine fail before any training, with an error class the retry
loop understands: fp16/bf16 or 4/8-bit quantization without a GPU is `unsupported`, a bitsandbytes
optimizer without bitsandbytes is `dependency`, an unknown trainer setting is `config`, a missing
dataset file or a prompt naming a column the dataset lacks is `data`.

Under a launcher (torchrun, `accelerate launch`, the CML workers) the same program is every rank of a
data-parallel run (`distributed.World`, read from the launcher's environment): the ranks join one
process group (gloo on CPU, NCCL on GPU) and the Trainer wraps the model in DDP, or FSDP /
DeepSpeed where `training_arguments` ask and the machine allows. Rank 0 alone logs to MLflow, saves
the adapter and writes the job's result and progress; every other rank writes its own progress
and result beside them (`progress.rank1.json`), so each reports and a failing rank's class is kept.

`framework_type: axolotl` hands the job to Axolotl (`python -m axolotl.cli.train CONFIG.yaml`)
when it is installed in the job's environment.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # imported as runners.train (tests): no sys.path change, which would shadow packages named like runners
    from runners import checkpoints, cml_workers, distributed, jobio
except ImportError:  # run as a program: its own folder is first on sys.path
    import checkpoints  # type: ignore[no-redef]
    import cml_workers  # type: ignore[no-redef]
    import distributed  # type: ignore[no-redef]
    import jobio  # type: ignore[no-redef]
JobFailure = jobio.JobFailure
load_data, _token, template_fields = jobio.load_data, jobio.hf_token, jobio.template_fields

TEXT_FIELD = "prediction"  # the Studio's TRAINING_DATA_TEXT_FIELD
DEFAULT_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM"}
# Trainer settings older Studio configs carry, renamed or removed in transformers 5 / trl 1.
RENAMED = {"evaluation_strategy": "eval_strategy", "max_seq_length": "max_length"}
DROPPED = ("overwrite_output_dir",)
# What the runner decides itself, whatever the config says.
METRICS_FLUSH_S = 30.0  # how often the buffered per-step metrics are written to MLflow during training
PROGRESS_EVERY_S = 1.0  # the progress file is rewritten at most this often (and at the last step)
FORCED = {"report_to": "none", "dataset_text_field": TEXT_FIELD}  # and the checkpoints' (checkpoints.trainer_settings)


# -- settings checks (no ML import needed) ---------------------------------------------------------


def legacy_training_arguments(args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Translate settings transformers 5 / trl 1 no longer know; returns (settings, notes for the log)."""
    args = dict(args)
    notes: list[str] = []
    if "warmup_ratio" in args:
        ratio = args.pop("warmup_ratio")
        if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise JobFailure("config", f"training_arguments: warmup_ratio must be a number in [0, 1); got {ratio!r}")
        if args.get("warmup_steps"):  # as in transformers 4: warmup_steps wins over warmup_ratio
            notes.append(f"warmup_ratio {ratio} ignored: warmup_steps {args['warmup_steps']} is set")
        else:  # transformers 5 reads a warmup_steps below 1 as a ratio of the total steps
            args["warmup_steps"] = float(ratio)
            notes.append(f"warmup_ratio {ratio} -> warmup_steps {float(ratio)} (a ratio of the total steps)")
    for old, new in RENAMED.items():
        if old in args:
            value = args.pop(old)
            args.setdefault(new, value)
            notes.append(f"{old} -> {new}")
    if "no_cuda" in args:
        value = args.pop("no_cuda")
        args.setdefault("use_cpu", value)
        notes.append("no_cuda -> use_cpu")
    for key in DROPPED:
        if key in args:
            args.pop(key)
            notes.append(f"{key} dropped (no longer a setting)")
    return args, notes


def check_hardware(args: dict[str, Any], bnb_config: dict[str, Any] | None, *, has_gpu: bool,
                   world: distributed.World | None = None, gpus: int | None = None) -> None:
    """Settings that need a GPU, on a job without one: a clear `unsupported` error, not a crash;
    sharded training (FSDP) with 4-bit weights the pinned libraries cannot shard: a `config` error;
    more processes on this machine than it has GPUs (`gpus`, when known): a `resources` error."""
    world = world or distributed.World()
    check_sharding(args, bnb_config)
    if has_gpu and gpus is not None and world.local_world_size > gpus:
        raise JobFailure(
            "resources",
            f"{world.local_world_size} training processes on this machine and {gpus} GPU(s): each process needs "
            "its own GPU; ask for fewer processes (resources.gpu) or a machine with more GPUs",
        )
    if has_gpu:
        return
    if args.get("fsdp"):
        raise JobFailure(
            "unsupported",
            f"training_arguments.fsdp: {args['fsdp']!r} shards the model across GPUs; this job has none: "
            "leave fsdp out (data-parallel training runs on CPU with gloo), or give the job GPUs",
        )
    for key in ("fp16", "bf16"):
        if args.get(key):
            raise JobFailure(
                "unsupported",
                f"training_arguments.{key}: true needs a GPU; this job has none: set {key}: false "
                "(training runs in float32 on CPU), or give the job a GPU",
            )
    for key in ("load_in_4bit", "load_in_8bit"):
        if (bnb_config or {}).get(key):
            raise JobFailure(
                "unsupported",
                f"bnb_config.{key}: true (quantized training) needs a GPU; this job has none: "
                "drop the bitsandbytes config, or give the job a GPU",
            )


def check_sharding(args: dict[str, Any], bnb_config: dict[str, Any] | None) -> None:
    """FSDP of a 4-bit model needs the quantized weights stored in a float dtype the shards can hold
    (`bnb_4bit_quant_storage`, as peft's QLoRA-FSDP recipe sets it); without it FSDP refuses to
    flatten uint8 and float parameters together. DeepSpeed and FSDP at once is refused by transformers."""
    if args.get("fsdp") and args.get("deepspeed"):
        raise JobFailure("config", "training_arguments asks for fsdp and deepspeed at once: choose one")
    if args.get("fsdp") and (bnb_config or {}).get("load_in_4bit") and not (bnb_config or {}).get("bnb_4bit_quant_storage"):
        raise JobFailure(
            "config",
            "bnb_config.load_in_4bit with training_arguments.fsdp needs bnb_4bit_quant_storage (e.g. bfloat16, the "
            "compute dtype): FSDP cannot shard 4-bit weights stored as uint8",
        )


def needs_bitsandbytes(optim: Any) -> bool:
    name = str(optim or "").lower()
    return name.startswith("paged_") or "bnb" in name or "8bit" in name


def check_dependencies(args: dict[str, Any], bnb_config: dict[str, Any] | None) -> None:
    """bitsandbytes features without bitsandbytes: a `dependency` error before anything loads."""
    if args.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise JobFailure(
            "dependency",
            "training_arguments.deepspeed needs deepspeed, which is not installed in this job's environment; "
            "install it, or use fsdp (GPUs) or plain data-parallel training",
        )
    if importlib.util.find_spec("bitsandbytes") is not None:
        return
    optim = args.get("optim")
    if needs_bitsandbytes(optim):
        raise JobFailure(
            "dependency",
            f"training_arguments.optim: {optim} needs bitsandbytes, which is not installed in this job's "
            "environment; install it or use optim: adamw_torch",
        )
    if any((bnb_config or {}).get(k) for k in ("load_in_4bit", "load_in_8bit")):
        raise JobFailure(
            "dependency",
            "bnb_config asks for quantization, which needs bitsandbytes; it is not installed in this job's "
            "environment: install it or drop the bitsandbytes config",
        )


def pad_token_candidate(tokenizer: Any) -> str | None:
    """The Studio's find_padding_token_candidate: a vocabulary token containing "pad" or "reserved"."""
    for token in sorted(tokenizer.get_vocab()):
        if "pad" in token.lower() or "reserved" in token.lower():
            return str(token)
    return None


def configure_padding(tokenizer: Any) -> str:
    """The Studio's fallback chain (configure_tokenizer_padding), then trl's own (the EOS token).

    Returns which rule chose the pad token."""
    if tokenizer.pad_token is not None:
        return "pad_token"
    if tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
        return "unk_token"
    candidate = pad_token_candidate(tokenizer)
    if candidate is not None:
        tokenizer.pad_token = candidate
        return "vocabulary"
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        return "eos_token"
    raise JobFailure("config", "the tokenizer has no pad, unknown or EOS token and no pad-like token in its vocabulary")


# -- data ------------------------------------------------------------------------------------------


def check_columns(dd: Any, template: str) -> None:
    """A prompt template naming a column the dataset lacks: a `data` error before anything else loads."""
    fields = template_fields(template)
    for split, ds in dd.items():
        missing = sorted(set(fields) - set(ds.column_names))
        if missing:
            raise JobFailure(
                "data",
                f"prompt_template names column(s) {', '.join(missing)} that the dataset's {split} split lacks "
                f"(it has: {', '.join(ds.column_names)})",
            )


def format_prediction(dd: Any, template: str, eos_token: str) -> Any:
    """Every split gets the `prediction` column: the prompt template filled from the row, plus EOS."""
    check_columns(dd, template)

    def fill(row: dict[str, Any]) -> dict[str, str]:
        return {TEXT_FIELD: template.format(**row) + eos_token}

    try:
        return dd.map(fill, desc="formatting prompts")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise JobFailure("data", f"prompt_template cannot be filled from a row: {type(exc).__name__}: {exc}") from exc


def sample_and_split(dd: Any, fraction: float, split: float, seed: int) -> tuple[Any, Any]:
    """The Studio's sample_and_split_dataset: downsample to `fraction`, then split train/test at `split`.

    A dataset with its own `test` split keeps it (each split downsampled alike)."""
    import datasets

    if not 0 < fraction <= 1:
        raise JobFailure("config", f"dataset_fraction must be in (0, 1]; got {fraction}")
    if not 0 < split <= 1:
        raise JobFailure("config", f"train_test_split must be in (0, 1]; got {split}")

    def sample(ds: datasets.Dataset) -> datasets.Dataset:
        if fraction >= 1 or len(ds) == 0:
            return ds
        return ds.shuffle(seed=seed).select(range(max(1, int(len(ds) * fraction))))

    train_name = "train" if "train" in dd else next(iter(dd))
    if "test" in dd and train_name != "test":
        train, test = sample(dd[train_name]), sample(dd["test"])
    else:
        rows = sample(dd[train_name])
        if split >= 1 or len(rows) < 2:
            train, test = rows, rows.select([])
        else:
            parts = rows.train_test_split(test_size=1 - split, seed=seed)
            train, test = parts["train"], parts["test"]
    if len(train) == 0:
        raise JobFailure(
            "data",
            f"the train split is empty ({len(dd[train_name])} rows, dataset_fraction {fraction}, "
            f"train_test_split {split}): nothing to train on",
        )
    return train, test


# -- the run ---------------------------------------------------------------------------------------


def train(job: dict[str, Any], progress: jobio.Progress) -> tuple[dict[str, float], dict[str, Any]]:
    spec = job.get("train")
    if not spec:
        raise JobFailure("config", "a train job needs a `train` section")
    outputs = job["outputs"]
    out_dir = Path(outputs["dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir = Path(outputs.get("adapter_dir") or out_dir / "adapter")
    if spec.get("framework_type", "legacy") == "axolotl":
        if distributed.World.from_environ().is_distributed:
            raise JobFailure("unsupported", "framework_type axolotl runs as one process here: launch it with "
                                            "resources.num_workers 1 and resources.gpu <= 1 (Axolotl scales out itself)")
        return train_axolotl(job, progress, adapter_dir)
    if not job.get("dataset"):
        raise JobFailure("config", "a train job needs a `dataset`")
    if not job.get("prompt"):
        raise JobFailure("config", "a legacy train job needs a `prompt` (its prompt_template formats the training text)")

    progress.update(stage="loading")
    import torch

    world = distributed.World.from_environ()
    has_gpu = torch.cuda.is_available()
    if not has_gpu:
        torch.set_num_threads(1)  # see reference/ml-stack.md §3.2: 2 threads on 2 busy cores is 10-35x slower

    args, notes = legacy_training_arguments(spec.get("training_arguments") or {})
    bnb_config = spec.get("bnb_config") or None
    check_hardware(args, bnb_config, has_gpu=has_gpu, world=world, gpus=torch.cuda.device_count() if has_gpu else 0)
    check_dependencies(args, bnb_config)
    for note in notes:
        print(f"training_arguments: {note}", flush=True)
    if world.is_distributed:
        print(f"distributed: {world.describe()}, backend {world.backend(has_gpu=has_gpu)}", flush=True)
    join(world, has_gpu=has_gpu)
    try:
        return train_on(job, spec, progress, world, args=args, bnb_config=bnb_config, has_gpu=has_gpu,
                        out_dir=out_dir, adapter_dir=adapter_dir)
    finally:
        distributed.close_process_group(world)


def join(world: distributed.World, *, has_gpu: bool) -> None:
    """Join the run's process group; a rank that cannot (the master unreachable, a timeout) is `transient`."""
    try:
        distributed.init_process_group(world, has_gpu=has_gpu)
    except (RuntimeError, ValueError, TimeoutError) as exc:
        raise JobFailure("transient", f"rank {world.rank} could not join the other {world.world_size - 1} "
                                      f"at {world.master_addr}:{world.master_port}: {exc}") from exc


def train_on(job: dict[str, Any], spec: dict[str, Any], progress: jobio.Progress, world: distributed.World, *,
             args: dict[str, Any], bnb_config: dict[str, Any] | None, has_gpu: bool, out_dir: Path,
             adapter_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Data, model and trainer, the same on every rank; rank 0 alone logs to MLflow and saves."""
    seed = int(job.get("seed", 42))
    dd = load_data(job["dataset"])
    check_columns(dd, job["prompt"]["prompt_template"])

    from transformers import AutoTokenizer

    model_path, tokenizer, model_token = resolve_model(job, AutoTokenizer)
    pad_rule = configure_padding(tokenizer)
    if tokenizer.eos_token is None:
        raise JobFailure("config", "the tokenizer has no EOS token to end each training text with")
    dd = format_prediction(dd, job["prompt"]["prompt_template"], tokenizer.eos_token)
    train_ds, test_ds = sample_and_split(dd, float(spec.get("dataset_fraction", 1.0)),
                                         float(spec.get("train_test_split", 0.9)), seed)
    train_ds = train_ds.select_columns([TEXT_FIELD])  # trl would prefer prompt/completion columns if present
    test_ds = test_ds.select_columns([TEXT_FIELD])
    print(f"data: {len(train_ds)} train rows, {len(test_ds)} test rows; pad token {tokenizer.pad_token!r} ({pad_rule})",
          flush=True)

    import peft
    import trl

    sft_args = sft_settings(args, spec, job, out_dir, has_gpu=has_gpu)
    try:
        sft_config = trl.SFTConfig(**sft_args)
    except (TypeError, ValueError) as exc:
        raise JobFailure("config", f"training_arguments: {exc}") from exc
    lora = {**DEFAULT_LORA, **spec["lora_config"]} if spec.get("lora_config") else dict(DEFAULT_LORA)
    lora.setdefault("task_type", "CAUSAL_LM")
    try:
        lora_config = peft.LoraConfig(**lora)
    except (TypeError, ValueError) as exc:
        raise JobFailure("config", f"lora_config: {exc}") from exc

    model = load_model(model_path, model_token, bnb_config, has_gpu=has_gpu, world=world)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    digest = checkpoints.input_digest(job)
    resume = checkpoints.resume_point(checkpoints.folder(out_dir), digest, enabled=checkpoints.enabled(sft_args))
    print(f"checkpoints: {resume.note}", flush=True)
    with tracked_run(job, spec, world, resume_run_id=resume.mlflow_run_id) as run:
        if run is not None:
            run.log_params(run_params(lora, sft_args, job, spec, len(train_ds), len(test_ds)))
        callback = progress_callback(progress, run.run_id if run is not None else None)
        if resume.resumed:
            callback.extra["resumed_from_step"] = resume.step
        marker = checkpoints.callback(digest, run.run_id if run is not None else None,
                                      on_saved=lambda step: callback.extra.update(checkpoint_step=step))
        eval_ds = test_ds if str(sft_args.get("eval_strategy", "no")) != "no" and len(test_ds) else None
        trainer = trl.SFTTrainer(model=model, args=sft_config, train_dataset=train_ds, eval_dataset=eval_ds,
                                 processing_class=tokenizer, peft_config=lora_config, callbacks=[callback, marker])
        tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        # Everything loaded so far lives as long as the job: keep the collector from rescanning it.
        # MLflow and SQLAlchemy leave ~200k more objects than a bare trl script has, and each full
        # collection during training (accelerate calls gc.collect()) scanned them all: 0.1 s of the
        # tiny model's 1.5 s of training (tests/bench/train_throughput.py).
        gc.freeze()
        started = time.perf_counter()
        try:
            output = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume.checkpoint else None)
        finally:
            gc.unfreeze()
        train_time = time.perf_counter() - started
        epochs = float(trainer.state.epoch or 0.0)
        trained_epochs = epochs - checkpoints.epoch(resume)  # a resumed training ran the rest only

        progress.update(stage="saving", step=trainer.state.global_step, total=trainer.state.max_steps, epoch=epochs,
                        **callback.extra)
        trainer.save_model(str(adapter_dir))  # every rank calls it (FSDP gathers the shards); rank 0 writes
        if world.is_main:
            tokenizer.save_pretrained(str(adapter_dir))

        metrics = {
            "train_loss": float(output.training_loss),
            "train_runtime_s": round(train_time, 4),
            "train_rows": float(len(train_ds)),
            "test_rows": float(len(test_ds)),
            "train_tokens": float(tokens_per_epoch * trained_epochs),
            "tokens_per_second": round(tokens_per_epoch * trained_epochs / train_time, 2) if train_time > 0 else 0.0,
            "train_steps": float(trainer.state.global_step),
            "trained_steps": float(trainer.state.global_step - resume.step),  # the steps this attempt really ran
            "epochs": epochs,
            "world_size": float(world.world_size),
        }
        if resume.resumed:
            metrics["resumed_from_step"] = float(resume.step)
        callback.flush()  # whatever on_train_end left: the run is ending
        if run is not None:
            run.log_metrics(metrics, step=trainer.state.global_step)
    print(json.dumps({"event": "trained", "rank": world.rank, **metrics}), flush=True)
    artifacts = {"adapter_dir": str(adapter_dir), "checkpoints": resume.note}
    if run is not None:
        artifacts.update(mlflow_run_id=run.run_id, mlflow_experiment_id=run.experiment_id)
    return metrics, artifacts


class TrackedRun:
    """Rank 0's MLflow run: params and metrics go to it; other ranks have none."""

    def __init__(self, mlflow: Any, run: Any, experiment_id: str) -> None:
        self.mlflow, self.run_id, self.experiment_id = mlflow, run.info.run_id, experiment_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.mlflow.log_params(params)

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)


@contextlib.contextmanager
def tracked_run(job: dict[str, Any], spec: dict[str, Any], world: distributed.World,
                resume_run_id: str | None = None) -> Iterator[TrackedRun | None]:
    """One MLflow run for the job, named after it, opened by rank 0 alone (None on other ranks). A
    resumed training goes on logging to the run its checkpoint names (its metrics continue at the
    resumed step), or to a new one when that run is gone."""
    if not world.is_main:
        yield None
        return
    import mlflow

    tracking = job["tracking"]
    experiment = jobio.open_experiment(mlflow, tracking)
    tags = {"ftctl.job_name": job["job_name"], "ftctl.kind": "train", "ftctl.adapter_name": spec["adapter_name"],
            **jobio.lineage_tags(job)}
    if tracking.get("run_group"):
        tags["ftctl.run_group"] = tracking["run_group"]
    if world.is_distributed:
        tags["ftctl.world_size"] = str(world.world_size)
    with resumed_run(mlflow, resume_run_id, run_name=job["job_name"], tags=tags) as run:
        yield TrackedRun(mlflow, run, experiment.experiment_id)


def resumed_run(mlflow: Any, run_id: str | None, **kwargs: Any) -> Any:
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id, **kwargs)
        except mlflow.exceptions.MlflowException as exc:
            print(f"checkpoints: MLflow run {run_id} not found ({exc}); logging to a new run", flush=True)
    return mlflow.start_run(**kwargs)


def resolve_model(job: dict[str, Any], auto_tokenizer: Any) -> tuple[str, Any, str | None]:
    """(where the base model loads from, its tokenizer, the Hub token if any)."""
    source = job["model"]
    kind, where = source["type"], source["name_or_path"]
    token = _token(source)
    if kind == "model_registry":
        import mlflow

        tracking = job["tracking"]
        mlflow.set_tracking_uri(tracking["tracking_uri"])
        if tracking.get("registry_uri"):
            mlflow.set_registry_uri(tracking["registry_uri"])
        components = mlflow.transformers.load_model(where, return_type="components")
        local = Path(job["outputs"]["dir"]) / "base-model"
        components["model"].save_pretrained(local)
        components["tokenizer"].save_pretrained(local)
        where = str(local)
    elif kind == "project" and not Path(where).is_dir():
        raise JobFailure("data", f"model project: {where} is not a directory")
    try:
        tokenizer = auto_tokenizer.from_pretrained(where, token=token)
    except OSError as exc:
        raise JobFailure("data", f"cannot load the tokenizer of model {where}: {exc}") from exc
    return where, tokenizer, token


def load_model(where: str, token: str | None, bnb_config: dict[str, Any] | None, *, has_gpu: bool,
               world: distributed.World | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"token": token}
    if bnb_config:
        kwargs["quantization_config"] = BitsAndBytesConfig(**bnb_config)
        if has_gpu and world is not None and world.is_distributed:  # each rank's quantized copy on its own GPU
            kwargs["device_map"] = {"": world.local_rank}
    if not has_gpu:
        kwargs["dtype"] = torch.float32
    try:
        return AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except OSError as exc:
        raise JobFailure("data", f"cannot load model {where}: {exc}") from exc


def sft_settings(args: dict[str, Any], spec: dict[str, Any], job: dict[str, Any], out_dir: Path,
                 *, has_gpu: bool) -> dict[str, Any]:
    """The SFTConfig keyword arguments: the config's, the job's overrides, and what the runner decides."""
    import dataclasses

    import trl

    known = {f.name for f in dataclasses.fields(trl.SFTConfig) if f.init}
    unknown = sorted(set(args) - known)
    if unknown:
        raise JobFailure("config", f"training_arguments: unknown setting(s) {', '.join(unknown)} "
                                   f"(not in trl {trl.__version__} SFTConfig)")
    settings = dict(args)
    if spec.get("num_epochs") is not None:
        settings["num_train_epochs"] = spec["num_epochs"]
    if spec.get("learning_rate") is not None:
        settings["learning_rate"] = spec["learning_rate"]
    settings.update(FORCED, **checkpoints.trainer_settings(args, out_dir), seed=int(job.get("seed", 42)))
    settings.setdefault("disable_tqdm", True)
    settings.setdefault("ddp_find_unused_parameters", False)  # LoRA: every trainable weight is used in each step
    settings.setdefault("run_name", job["job_name"])
    if not has_gpu:  # SFTConfig's bf16 default raises on CPU (reference/ml-stack.md §3.3)
        settings.update(bf16=False, fp16=False, use_cpu=True)
    return settings


def run_params(lora: dict[str, Any], sft_args: dict[str, Any], job: dict[str, Any], spec: dict[str, Any],
               train_rows: int, test_rows: int) -> dict[str, Any]:
    params: dict[str, Any] = {f"lora.{k}": v for k, v in lora.items()}
    params.update({k: v for k, v in sft_args.items() if k not in ("output_dir", "run_name")})
    params.update({
        "base_model": job["model"]["name_or_path"], "dataset": job["dataset"]["name_or_path"],
        "adapter_name": spec["adapter_name"], "dataset_fraction": spec.get("dataset_fraction", 1.0),
        "train_test_split": spec.get("train_test_split", 0.9), "framework_type": "legacy",
    })
    return {k: str(v)[:6000] for k, v in params.items()}


def progress_callback(progress: jobio.Progress, run_id: str | None) -> Any:
    """A TrainerCallback: the progress file (at most every PROGRESS_EVERY_S) and the logged metrics
    to MLflow, from every logging step (no MLflow without a run: ranks other than 0).

    The metrics are buffered and written in batches (every METRICS_FLUSH_S, and at the end of
    training), each with its own step and time: writing them from inside the training loop, even
    asynchronously, slowed the tiny model's training by a fifth."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from transformers import TrainerCallback

    client = MlflowClient() if run_id is not None else None

    class ProgressCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.buffer: list[Any] = []
            self.flushed = time.monotonic()
            self.written = 0.0  # when the progress file was last written
            self.loss: float | None = None
            self.extra: dict[str, Any] = {}  # resumed_from_step, checkpoint_step: in every progress update

        def flush(self) -> None:
            if run_id is None:
                self.buffer.clear()
                return
            assert client is not None
            for start in range(0, len(self.buffer), 1000):  # MLflow's log_batch limit
                client.log_batch(run_id, metrics=self.buffer[start:start + 1000], synchronous=True)
            self.buffer.clear()
            self.flushed = time.monotonic()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress.update(stage="training", step=state.global_step, total=state.max_steps,
                            epoch=round(state.epoch or 0.0, 4), **self.extra)
            self.written = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            logs = logs or {}
            numbers = {k: float(v) for k, v in logs.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            if time.monotonic() - self.written >= PROGRESS_EVERY_S or state.global_step >= state.max_steps:
                progress.update(stage="training", step=state.global_step, total=state.max_steps,
                                epoch=round(state.epoch or 0.0, 4), loss=numbers.get("loss", self.loss), **self.extra)
                self.written = time.monotonic()
            if "loss" in numbers:
                self.loss = numbers["loss"]
            now = int(time.time() * 1000)
            self.buffer += [Metric(k, v, now, state.global_step) for k, v in numbers.items()]
            if time.monotonic() - self.flushed > METRICS_FLUSH_S:
                self.flush()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.flush()

    return ProgressCallback()


# -- Axolotl ---------------------------------------------------------------------------------------


def train_axolotl(job: dict[str, Any], progress: jobio.Progress, adapter_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """framework_type axolotl: write the Axolotl config and run Axolotl's own trainer on it."""
    try:
        import axolotl  # noqa: F401
    except ImportError as exc:
        raise JobFailure(
            "dependency", "axolotl is not installed in this job's environment; install it or use framework_type: legacy"
        ) from exc
    spec = job["train"]
    config = dict(spec.get("axolotl_config") or {})
    if not config:
        raise JobFailure("config", "framework_type axolotl needs an axolotl_config")
    config.setdefault("base_model", job["model"]["name_or_path"])
    config["output_dir"] = str(adapter_dir)
    config.setdefault("seed", int(job.get("seed", 42)))
    if job.get("dataset"):
        source = job["dataset"]
        local = {"project_csv": "csv", "project_json": "json", "project_jsonl": "json"}.get(source["type"])
        entries = [dict(e) for e in config.get("datasets") or [{}]]
        for entry in entries:
            entry.setdefault("path", source["name_or_path"])
            if local:
                entry.setdefault("ds_type", local)
        config["datasets"] = entries
    if spec.get("num_epochs") is not None:
        config["num_epochs"] = spec["num_epochs"]
    if spec.get("learning_rate") is not None:
        config["learning_rate"] = spec["learning_rate"]
    tracking = job["tracking"]
    config.setdefault("mlflow_tracking_uri", tracking["tracking_uri"])
    config.setdefault("mlflow_experiment_name", tracking.get("experiment") or "ftctl")
    config.setdefault("mlflow_run_name", job["job_name"])

    # The config holds the secrets its references resolved to (jobio.resolve_references): it lives in a
    # private temporary folder while Axolotl runs, never in the job folder.
    with tempfile.TemporaryDirectory(prefix="ftctl-axolotl-") as private:
        config_path = Path(private) / "axolotl.yaml"
        try:
            import yaml

            config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        except ImportError:  # JSON is YAML too
            config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        progress.update(stage="training")
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "axolotl.cli.train", str(config_path)], check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise JobFailure("internal", f"axolotl exited {proc.returncode}; see the job log")
    return {"train_runtime_s": round(elapsed, 4)}, {"adapter_dir": str(adapter_dir)}


def main() -> None:
    scaled = cml_workers.scale_out(str(Path(__file__).resolve()), sys.argv[1:])  # the master or a worker on CML
    sys.exit(jobio.run("train", train) if scaled is None else scaled)


if __name__ == "__main__":
    main()
