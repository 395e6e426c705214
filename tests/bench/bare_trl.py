"""The baseline for the train runner's throughput: a bare, hand-written trl LoRA fine-tune.

    python tests/bench/bare_trl.py SETTINGS.json

SETTINGS names the model dir, the CSV, the prompt template, the LoRA config, the bitsandbytes config
(`bnb`, optional: QLoRA) and the SFTConfig keyword arguments (train_throughput.py writes it from the same values it gives the runner). This
does what the runner does, minus the runner: no job files, no progress, no MLflow. It prints one
JSON line: tokens processed (the tokenized train rows' lengths x epochs trained), the time of
`trainer.train()`, and their ratio, measured exactly as runners/train.py measures them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
                     "DISABLE_MLFLOW_INTEGRATION": "TRUE", "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_key, _value)


def main() -> int:
    settings = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    has_gpu = torch.cuda.is_available()
    if not has_gpu:
        torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    template = settings["prompt_template"]
    rows = load_dataset("csv", data_files=settings["csv"])["train"]
    rows = rows.map(lambda row: {"prediction": template.format(**row) + tokenizer.eos_token})
    train = rows.train_test_split(test_size=1 - settings["train_test_split"], seed=settings["seed"])["train"]
    train = train.select_columns(["prediction"])

    sft = dict(settings["sft"])
    if not has_gpu:
        sft.update(bf16=False, fp16=False, use_cpu=True)
    kwargs = {} if has_gpu else {"dtype": torch.float32}
    if settings.get("bnb"):  # QLoRA: the base model in 4-bit, as the runner loads it from bnb_config
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(**settings["bnb"])
    model = AutoModelForCausalLM.from_pretrained(settings["model"], **kwargs)
    trainer = SFTTrainer(model=model, args=SFTConfig(**sft), train_dataset=train, processing_class=tokenizer,
                         peft_config=LoraConfig(**settings["lora"]))
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    started = time.perf_counter()
    output = trainer.train()
    elapsed = time.perf_counter() - started
    tokens = tokens_per_epoch * float(trainer.state.epoch or 0.0)
    print(json.dumps({"script": "bare_trl", "train_rows": len(train), "tokens": tokens, "train_time_s": elapsed,
                      "tokens_per_second": tokens / elapsed, "train_loss": output.training_loss}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
