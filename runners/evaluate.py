"""The evaluate runner: generate on the test split with each model+adapter candidate, score, log to MLflow.

A program, not a library: `python runners/evaluate.py --input job.json` (or FTCTL_JOB_INPUT). It
reads a job input (schemas/job-input.schema.json, kind "evaluate") and always ends by writing its
job result (schemas/job-result.schema.json) through `jobio.run`. Never imports ftctl.

The Studio runs one evaluation job per model+adapter combination (`candidates` usually holds one),
grouped by a shared parent job id (`tracking.run_group`). For each candidate:

1. the dataset is loaded as the train runner loads it, and the train runner's test split is rebuilt
   with the same recipe and seed: sample `eval_dataset_fraction` of the rows
   (`shuffle(seed).select(range(int(n * fraction)))`, only when the fraction is below 1), then
   `train_test_split(test_size=1 - train_test_split, seed=seed)`; a `test` split the dataset
   already has is used as it is (sampled alike); at most `max_rows` rows are kept;
2. the base model is loaded (plus the PEFT adapter when the candidate names one), the tokenizer
   pads on the left, and each row's input is `prompt.input_template.format(**row)`, its expected
   answer `prompt.completion_template.format(**row)`;
3. generation uses `generation_config` (default: greedy, 32 new tokens); only the new tokens are
   decoded;
4. scores per row: exact match (stripped equality), ROUGE-L F-measure (`rouge_score`, offline),
   latency (seconds per row, from batched generation); their means are the candidate's metrics;
5. one MLflow run per candidate, named `<job_name>/<label>`, tagged with the parent job id, the
   evaluation id and the adapter, with the metrics `exact_match`, `rougeL`, `latency_s`, `rows`
   logged directly (no `mlflow.evaluate`: its default metric sets reach the network) and the rows
   as a table artifact.

Outputs: `<outputs.dir>/rows.csv` (input, expected, prediction, exact_match, rougeL, latency_s,
label) and `<outputs.dir>/aggregate.csv` (label, metric, value). Result metrics carry plain names
for a single candidate and `<label>.<metric>` for several. When the input names
`outputs.evaluation_dir` (the folder ftctl records as the Studio row's `evaluation_dir`), each
candidate's results are also written there with the Studio's file names and columns
(`studio_results.py`), so the Studio's evaluation page shows them.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import jobio  # noqa: E402
from jobio import JobFailure, load_data, template_fields  # noqa: E402
from jobio import hf_token as _token  # noqa: E402
from studio_results import folder_of, write_csv, write_results  # noqa: E402

DEFAULT_GENERATION: dict[str, Any] = {"do_sample": False, "max_new_tokens": 32}
BATCH_SIZE = 8
METRICS = ("exact_match", "rougeL", "latency_s", "rows")
ROW_FIELDS = ("input", "expected", "prediction", "exact_match", "rougeL", "latency_s", "label")


# -- checks (no ML import needed) ------------------------------------------------------------------


def check_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec = job.get("evaluate")
    if not spec:
        raise JobFailure("config", "an evaluate job needs an `evaluate` section")
    if not spec.get("candidates"):
        raise JobFailure("config", "evaluate.candidates is empty: name at least one model+adapter combination")
    labels = [c["label"] for c in spec["candidates"]]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise JobFailure("config", f"evaluate.candidates: label(s) {', '.join(duplicates)} used more than once")
    if not job.get("dataset"):
        raise JobFailure("config", "an evaluate job needs a `dataset`")
    prompt = job.get("prompt") or {}
    if not prompt.get("input_template") or not prompt.get("completion_template"):
        raise JobFailure("config", "an evaluate job needs prompt.input_template and prompt.completion_template "
                                   "(the model's input and the expected answer of each row)")
    max_rows = spec.get("max_rows")
    if max_rows is not None and max_rows < 1:
        raise JobFailure("config", f"evaluate.max_rows must be at least 1; got {max_rows}")
    return spec


def check_hardware(bnb_config: dict[str, Any] | None, *, has_gpu: bool) -> None:
    """Quantized loading without a GPU, or without bitsandbytes: a clear error, not a crash."""
    quantized = [k for k in ("load_in_4bit", "load_in_8bit") if (bnb_config or {}).get(k)]
    if not quantized:
        return
    if not has_gpu:
        raise JobFailure("unsupported", f"evaluate.bnb_config.{quantized[0]}: true needs a GPU; this job has none: "
                                        "drop the bitsandbytes config, or give the job a GPU")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise JobFailure("dependency", "evaluate.bnb_config asks for quantization, which needs bitsandbytes; "
                                       "it is not installed in this job's environment")


def generation_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """generate() arguments: the defaults under the job's generation config (a max_length replaces the
    default max_new_tokens, which would otherwise win)."""
    given = dict(spec.get("generation_config") or {})
    defaults = dict(DEFAULT_GENERATION)
    if "max_length" in given:
        defaults.pop("max_new_tokens")
    return {**defaults, **given}


def result_metrics(per_label: dict[str, dict[str, float]]) -> dict[str, float]:
    """Plain metric names for a single candidate, `<label>.<metric>` for several."""
    if len(per_label) == 1:
        return dict(next(iter(per_label.values())))
    return {f"{label}.{name}": value for label, metrics in per_label.items() for name, value in metrics.items()}


# -- data (loading is jobio's, as for training; the split mirrors the train runner's: tests compare the two)


def test_split(dd: Any, fraction: float, split: float, seed: int) -> Any:
    """The train runner's test split: sample `fraction`, split at `split`; an existing `test` split wins."""
    if not 0 < fraction <= 1:
        raise JobFailure("config", f"eval_dataset_fraction must be in (0, 1]; got {fraction}")
    if not 0 < split <= 1:
        raise JobFailure("config", f"train_test_split must be in (0, 1]; got {split}")

    def sample(ds: Any) -> Any:
        if fraction >= 1 or len(ds) == 0:
            return ds
        return ds.shuffle(seed=seed).select(range(max(1, int(len(ds) * fraction))))

    train_name = "train" if "train" in dd else next(iter(dd))
    if "test" in dd and train_name != "test":
        return sample(dd["test"])
    rows = sample(dd[train_name])
    if split >= 1 or len(rows) < 2:
        return rows.select([])
    return rows.train_test_split(test_size=1 - split, seed=seed)["test"]


def examples(test: Any, prompt: dict[str, Any], max_rows: int | None) -> list[dict[str, str]]:
    """(input, expected) of each test row, at most `max_rows`."""
    templates = {"input_template": prompt["input_template"], "completion_template": prompt["completion_template"]}
    for what, template in templates.items():
        missing = sorted(set(template_fields(template, f"prompt.{what}")) - set(test.column_names))
        if missing:
            raise JobFailure("data", f"prompt.{what} names column(s) {', '.join(missing)} that the test rows lack "
                                     f"(they have: {', '.join(test.column_names)})")
    if max_rows is not None and len(test) > max_rows:
        test = test.select(range(max_rows))
    out = []
    for row in test:
        try:
            out.append({"input": templates["input_template"].format(**row),
                        "expected": templates["completion_template"].format(**row)})
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise JobFailure("data", f"the prompt templates cannot be filled from a row: {type(exc).__name__}: {exc}"
                             ) from exc
    return out


# -- models ----------------------------------------------------------------------------------------


def setup_tracking(job: dict[str, Any]) -> Any:
    """MLflow pointed at the job's tracking (and registry) URI; returns the experiment."""
    import mlflow

    return jobio.open_experiment(mlflow, job["tracking"])


def resolve_base(source: dict[str, Any], job: dict[str, Any], cache: dict[str, str]) -> tuple[str, str | None]:
    """(where the base model loads from, the Hub token if any); a registry model is fetched once."""
    kind, where = source["type"], source["name_or_path"]
    token = _token(source)
    if kind == "model_registry":
        if where not in cache:
            import mlflow

            setup_tracking(job)
            try:
                components = mlflow.transformers.load_model(where, return_type="components")
            except mlflow.exceptions.MlflowException as exc:
                raise JobFailure("data", f"cannot load model {where} from the registry: {exc}") from exc
            local = Path(job["outputs"]["dir"]) / f"base-model-{len(cache) + 1}"
            components["model"].save_pretrained(local)
            components["tokenizer"].save_pretrained(local)
            cache[where] = str(local)
        return cache[where], token
    if kind == "project" and not Path(where).is_dir():
        raise JobFailure("data", f"model project: {where} is not a directory")
    return where, token


def load_candidate(candidate: dict[str, Any], job: dict[str, Any], cache: dict[str, str],
                   bnb_config: dict[str, Any] | None, *, has_gpu: bool) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer padding on the left) for one model+adapter combination."""
    import torch
    from transformers import BitsAndBytesConfig

    base, token = resolve_base(candidate["model"], job, cache)
    adapter = candidate.get("adapter_path")
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise JobFailure("data", f"adapter {adapter} not found: no adapter_config.json there")
    kwargs: dict[str, Any] = {}
    if bnb_config:
        kwargs["quantization_config"] = BitsAndBytesConfig(**bnb_config)
    if not has_gpu:
        kwargs["dtype"] = torch.float32
    model, tokenizer_from, tokenizer = jobio.load_model(base, adapter, token, **kwargs)
    tokenizer.padding_side = "left"  # decoder-only: right padding makes batched generation wrong
    if tokenizer.pad_token is None:
        raise JobFailure("config", f"the tokenizer of {tokenizer_from} has no pad, unknown or EOS token")
    if has_gpu and not bnb_config:
        model = model.to("cuda")
    return model.eval(), tokenizer


def generate(model: Any, tokenizer: Any, inputs: list[str], settings: dict[str, Any],
             on_batch: Any) -> tuple[list[str], list[float]]:
    """Greedy (or as configured) generation in batches; (new text per row, seconds per row)."""
    import torch

    predictions: list[str] = []
    latencies: list[float] = []
    kwargs = {"pad_token_id": tokenizer.pad_token_id, **settings}
    for start in range(0, len(inputs), BATCH_SIZE):
        batch = inputs[start:start + BATCH_SIZE]
        encoded = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
        began = time.perf_counter()
        try:
            with torch.no_grad():
                output = model.generate(**encoded, **kwargs)
        except (TypeError, ValueError) as exc:
            raise JobFailure("config", f"generation_config: {type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - began
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        predictions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        latencies += [elapsed / len(batch)] * len(batch)
        on_batch(len(batch))
    return predictions, latencies


def score(rows: list[dict[str, Any]]) -> None:
    """Adds exact_match and rougeL to each row (prediction vs expected)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for row in rows:
        prediction, expected = row["prediction"], row["expected"]
        row["exact_match"] = 1.0 if prediction.strip() == expected.strip() else 0.0
        row["rougeL"] = float(scorer.score(expected, prediction)["rougeL"].fmeasure)


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {
        "exact_match": sum(r["exact_match"] for r in rows) / n,
        "rougeL": sum(r["rougeL"] for r in rows) / n,
        "latency_s": sum(r["latency_s"] for r in rows) / n,
        "rows": float(n),
    }


# -- the run ---------------------------------------------------------------------------------------


def evaluate(job: dict[str, Any], progress: jobio.Progress) -> tuple[dict[str, float], dict[str, Any]]:
    spec = check_spec(job)
    out_dir = Path(job["outputs"]["dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = spec["candidates"]
    bnb_config = spec.get("bnb_config") or None
    settings = generation_settings(spec)
    seed = int(job.get("seed", 42))

    progress.update(stage="loading")
    fraction, split = float(spec.get("eval_dataset_fraction", 1.0)), float(spec.get("train_test_split", 0.9))
    test = test_split(load_data(job["dataset"]), fraction, split, seed)
    if len(test) == 0:
        raise JobFailure("data", f"no test rows to evaluate (eval_dataset_fraction {fraction}, "
                                 f"train_test_split {split}): lower train_test_split")
    items = examples(test, job["prompt"], spec.get("max_rows"))
    print(f"data: {len(items)} test rows, {len(candidates)} candidate(s); generation {json.dumps(settings)}", flush=True)

    import torch

    has_gpu = torch.cuda.is_available()
    if not has_gpu:
        torch.set_num_threads(1)  # reference/ml-stack.md §3.2: 2 threads on 2 busy cores is 10-35x slower
    check_hardware(bnb_config, has_gpu=has_gpu)

    import mlflow

    experiment = setup_tracking(job)
    tracking = job["tracking"]
    total = len(items) * len(candidates)
    done = 0
    all_rows: list[dict[str, Any]] = []
    per_label: dict[str, dict[str, float]] = {}
    run_ids: dict[str, str] = {}
    cache: dict[str, str] = {}
    progress.update(stage="evaluating", step=0, total=total)
    for candidate in candidates:
        label = candidate["label"]
        model, tokenizer = load_candidate(candidate, job, cache, bnb_config, has_gpu=has_gpu)

        def advance(n: int, label: str = label) -> None:
            nonlocal done
            done += n
            progress.update(stage="evaluating", step=done, total=total, candidate=label)

        torch.manual_seed(seed)  # sampling, when the generation config asks for it, is reproducible
        predictions, latencies = generate(model, tokenizer, [i["input"] for i in items], settings, advance)
        del model
        gc.collect()
        if has_gpu:
            torch.cuda.empty_cache()
        rows = [{**item, "prediction": p, "latency_s": t, "label": label}
                for item, p, t in zip(items, predictions, latencies)]
        score(rows)
        metrics = summarize(rows)
        per_label[label] = metrics
        all_rows += rows
        run_ids[label] = log_run(mlflow, job, spec, candidate, metrics, rows, settings, tracking)
        print(json.dumps({"event": "evaluated", "label": label, **metrics}), flush=True)

    studio_dirs = _studio_results(job, candidates, all_rows, per_label)
    rows_csv, aggregate_csv = out_dir / "rows.csv", out_dir / "aggregate.csv"
    write_csv(rows_csv, ROW_FIELDS, all_rows)
    write_csv(aggregate_csv, ("label", "metric", "value"),
              [{"label": label, "metric": name, "value": value}
               for label, metrics in per_label.items() for name, value in metrics.items()])
    artifacts = {"rows_csv": str(rows_csv), "aggregate_csv": str(aggregate_csv), "mlflow_run_ids": run_ids,
                 "mlflow_experiment_id": experiment.experiment_id}
    if studio_dirs:
        artifacts["evaluation_dirs"] = studio_dirs
    return result_metrics(per_label), artifacts


def _studio_results(job: dict[str, Any], candidates: list[dict[str, Any]], rows: list[dict[str, Any]],
                    per_label: dict[str, dict[str, float]]) -> dict[str, str]:
    """Each candidate's results in the Studio's files under `outputs.evaluation_dir`; label -> folder."""
    where = job["outputs"].get("evaluation_dir")
    if not where:
        return {}
    out = {}
    for candidate in candidates:
        label = candidate["label"]
        folder = folder_of(where, candidate["evaluation_id"], len(candidates))
        write_results(folder, [r for r in rows if r["label"] == label], per_label[label])
        out[label] = str(folder)
    return out


def log_run(mlflow: Any, job: dict[str, Any], spec: dict[str, Any], candidate: dict[str, Any],
            metrics: dict[str, float], rows: list[dict[str, Any]], settings: dict[str, Any],
            tracking: dict[str, Any]) -> str:
    """One MLflow run for one candidate; returns its id."""
    adapter = candidate.get("adapter_path")
    tags = {
        "ftctl.parent_job_id": tracking.get("run_group") or job["job_name"],
        "ftctl.evaluation_id": candidate["evaluation_id"],
        "ftctl.adapter": adapter or "base",
        "ftctl.label": candidate["label"],
        "ftctl.job_name": job["job_name"],
        "ftctl.kind": "evaluate",
        **jobio.lineage_tags(job),
    }
    params = {
        "base_model": candidate["model"]["name_or_path"], "adapter": adapter or "base",
        "dataset": job["dataset"]["name_or_path"], "eval_dataset_fraction": spec.get("eval_dataset_fraction", 1.0),
        "train_test_split": spec.get("train_test_split", 0.9), "max_rows": spec.get("max_rows"),
        "seed": job.get("seed", 42), "generation_config": json.dumps(settings, sort_keys=True),
    }
    with mlflow.start_run(run_name=f"{job['job_name']}/{candidate['label']}", tags=tags) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_table({field: [row[field] for row in rows] for field in ROW_FIELDS}, artifact_file="eval_rows.json")
    return str(run.info.run_id)


def main() -> None:
    # This program is named like the Hugging Face `evaluate` package (which mlflow's legacy metrics
    # import): with jobio in, take the runners folder off the path so no library imports this file.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.exit(jobio.run("evaluate", evaluate))


if __name__ == "__main__":
    main()
