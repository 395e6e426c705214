"""Training throughput: the train runner against a bare trl script, same model, data and settings.

    python tests/bench/train_throughput.py MODEL_DIR --device cpu|cuda [--quant none|4bit] [--epochs N] [--runs R]
                                           [--build-random --tokenizer TINY_MODEL_DIR]

Runs (a) `runners/train.py` on a job input for the demo dataset (specs/demo: the CSV, the prompt,
the `demo-lora` and `demo-training` configs) and (b) `tests/bench/bare_trl.py` with the very
SFTConfig values the runner ends up with, each in its own process, alternately, R times each. Both
count tokens the same way: the tokenized train rows' lengths x epochs trained, over the time of
`trainer.train()`. The runner reports it in its job result (`metrics.tokens_per_second`), the bare
script as a JSON line. Prints each run, the medians and best runs, and the ratio runner / bare of
the best runs (target >= 0.95; the medians' ratio beside it); the last line is a JSON summary. `--device cpu` hides any GPU from both (CUDA_VISIBLE_DEVICES="").

`--device cuda` trains in bf16 on the GPU (both sides); `--quant 4bit` loads the base model in 4-bit
NF4 with bitsandbytes (QLoRA, both sides). `--build-random` first builds MODEL_DIR, when it holds no
model, as a Llama of ~0.5B parameters with random weights from a config (RANDOM_MODEL; nothing is
downloaded), with the tokenizer of `--tokenizer` (the demo's tiny model's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "specs" / "demo"
WORK = REPO / ".bench" / "train-throughput"
TARGET_RATIO = 0.95
# ~0.47B parameters with the tiny model's 512-token vocabulary: 28 layers of 16.8M (attention 4.2M, MLP 12.6M).
RANDOM_MODEL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 28, "num_attention_heads": 16,
                "num_key_value_heads": 16, "max_position_embeddings": 512}
QLORA = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16",
         "bnb_4bit_use_double_quant": True}


def build_random_model(out: Path, tokenizer_dir: Path) -> int:
    """MODEL_DIR as a RANDOM_MODEL Llama with random (seeded) weights and the given tokenizer; its
    parameter count (an existing model is kept: then counted from its config, less the norms)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file():
        config = AutoConfig.from_pretrained(out)
        return int(config.num_hidden_layers * (4 * config.hidden_size ** 2 + 3 * config.hidden_size * config.intermediate_size)
                   + 2 * config.vocab_size * config.hidden_size)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **RANDOM_MODEL)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def demo_settings() -> dict[str, Any]:
    """The demo's prompt, LoRA config and training arguments, read from specs/demo."""
    docs = [d for f in ("configs.yaml", "resources.yaml") for d in yaml.safe_load_all((DEMO / f).read_text()) if d]
    by_name = {d["metadata"]["name"]: d["spec"] for d in docs}
    return {
        "prompt_template": by_name["demo-ticketing"]["prompt_template"],
        "lora": by_name["demo-lora"]["config"],
        "training": by_name["demo-training"]["config"],
        "csv": str(DEMO / "data" / "tickets.csv"),
    }


def job_input(model_dir: Path, run_dir: Path, demo: dict[str, Any], training: dict[str, Any],
              bnb: dict[str, Any] | None = None) -> dict[str, Any]:
    out = run_dir / "out"
    return {
        "contract_version": 1, "kind": "train", "job_name": f"bench-{run_dir.name}", "seed": 42,
        "model": {"type": "project", "name_or_path": str(model_dir)},
        "dataset": {"type": "project_csv", "name_or_path": demo["csv"]},
        "prompt": {"prompt_template": demo["prompt_template"]},
        "train": {"adapter_name": "bench", "lora_config": demo["lora"], "training_arguments": training,
                  "bnb_config": bnb, "dataset_fraction": 1.0, "train_test_split": 0.9},
        "outputs": {"dir": str(out), "result": str(out / "result.json"), "progress": str(out / "progress.json"),
                    "adapter_dir": str(out / "adapter")},
        "tracking": {"tracking_uri": f"sqlite:///{WORK / 'mlflow.db'}", "experiment": "bench-train-throughput"},
    }


def bare_settings(model_dir: Path, run_dir: Path, demo: dict[str, Any], training: dict[str, Any],
                  bnb: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SFTConfig the runner builds (its forced values included), for the bare script."""
    sft = {**training, "save_strategy": "no", "report_to": "none", "dataset_text_field": "prediction",
           "seed": 42, "output_dir": str(run_dir / "trainer"), "run_name": f"bench-{run_dir.name}"}
    sft.setdefault("disable_tqdm", True)
    return {"model": str(model_dir), "csv": demo["csv"], "prompt_template": demo["prompt_template"],
            "lora": demo["lora"], "sft": sft, "bnb": bnb, "train_test_split": 0.9, "seed": 42}


def child_env(device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FTCTL_RUNNER_FAIL")}
    env.setdefault("HF_HOME", str(REPO / ".bench" / "hf-home"))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_one(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        tail = "\n  ".join(proc.stderr.splitlines()[-25:])
        raise RuntimeError(f"`{' '.join(argv)}` exited {proc.returncode}\n  {tail}")
    return proc


def measure(model_dir: Path, device: str, epochs: int, runs: int, python: str = sys.executable,
            quant: str = "none") -> dict[str, Any]:
    """Alternate runner and bare script `runs` times each; medians of tokens/second and their ratio."""
    demo = demo_settings()
    training = {**demo["training"], "num_train_epochs": epochs, "use_cpu": device == "cpu"}
    if device == "cuda":
        training["bf16"] = True
    bnb = dict(QLORA) if quant == "4bit" else None
    env = child_env(device)
    WORK.mkdir(parents=True, exist_ok=True)
    runner: list[float] = []
    bare: list[float] = []
    for i in range(runs):
        run_dir = WORK / f"run-{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)

        job_path = run_dir / "job.json"
        job = job_input(model_dir, run_dir, demo, training, bnb)
        job_path.write_text(json.dumps(job, indent=1))
        started = time.perf_counter()
        run_one([python, str(REPO / "runners" / "train.py"), "--input", str(job_path)], env)
        wall = time.perf_counter() - started
        result = json.loads(Path(job["outputs"]["result"]).read_text())
        m = result["metrics"]
        runner.append(m["tokens_per_second"])
        print(f"  run {i + 1}: runner   {m['tokens_per_second']:>9.1f} tokens/s  ({m['train_tokens']:.0f} tokens in "
              f"{m['train_runtime_s']:.3f} s of trainer.train(); process {wall:.1f} s)", flush=True)

        settings_path = run_dir / "bare.json"
        settings_path.write_text(json.dumps(bare_settings(model_dir, run_dir, demo, training, bnb), indent=1))
        started = time.perf_counter()
        proc = run_one([python, str(Path(__file__).with_name("bare_trl.py")), str(settings_path)], env)
        wall = time.perf_counter() - started
        line = next(json.loads(x) for x in reversed(proc.stdout.splitlines()) if x.startswith('{"script"'))
        bare.append(line["tokens_per_second"])
        print(f"  run {i + 1}: bare trl {line['tokens_per_second']:>9.1f} tokens/s  ({line['tokens']:.0f} tokens in "
              f"{line['train_time_s']:.3f} s of trainer.train(); process {wall:.1f} s)", flush=True)
    runner_tps, bare_tps = statistics.median(runner), statistics.median(bare)
    # The verdict compares each side's fastest run: on a shared machine other work only ever slows a
    # run down, so the fastest is the least disturbed. The medians' ratio is reported beside it.
    return {"device": device, "quant": quant, "epochs": epochs, "runs": runs, "runner_tokens_per_second": runner_tps,
            "bare_tokens_per_second": bare_tps, "ratio": max(runner) / max(bare),
            "median_ratio": runner_tps / bare_tps, "runner_best": max(runner), "bare_best": max(bare),
            "target_ratio": TARGET_RATIO, "runner_all": runner, "bare_all": bare}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none", help="4bit: QLoRA (bitsandbytes NF4); needs cuda")
    parser.add_argument("--build-random", action="store_true", help="build MODEL_DIR as the ~0.5B random Llama first")
    parser.add_argument("--tokenizer", type=Path, help="--build-random: the tokenizer's model folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quant != "none" and args.device != "cuda":
        parser.error("--quant 4bit needs --device cuda (bitsandbytes quantizes on the GPU)")
    if args.build_random:
        if args.tokenizer is None:
            parser.error("--build-random needs --tokenizer")
        print(f"  model: {args.model_dir}, {build_random_model(args.model_dir, args.tokenizer):,} parameters (random weights)",
              flush=True)
    summary = measure(args.model_dir.resolve(), args.device, args.epochs, args.runs, quant=args.quant)
    verdict = "PASS" if summary["ratio"] >= TARGET_RATIO else "MISS"
    print(f"  runner   {summary['runner_tokens_per_second']:.1f} tokens/s median, {summary['runner_best']:.1f} best "
          f"of {args.runs}")
    print(f"  bare trl {summary['bare_tokens_per_second']:.1f} tokens/s median, {summary['bare_best']:.1f} best "
          f"of {args.runs}")
    print(f"  ratio    {summary['ratio']:.3f} best/best, {summary['median_ratio']:.3f} median/median "
          f"(target >= {TARGET_RATIO} best/best)  {verdict}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
