"""Build the demo's tiny causal LM and tokenizer offline (no download): a byte-level BPE trained on
the demo dataset's text and a randomly initialised 2-layer Llama (~100k parameters).

A program, not a library: `python runners/build_tiny_model.py --data CSV --out DIR`. Deterministic
(seeded) and idempotent (an existing model in DIR is kept unless --force). Never imports ftctl.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}### Question: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}### Answer: {% generation %}{{ m['content'] }}{{ eos_token }}"
    "{% endgeneration %}\n{% endif %}{% endfor %}{% if add_generation_prompt %}### Answer: {% endif %}"
)


def corpus(csv_path: Path) -> list[str]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    texts = [" ".join(row) for row in body]
    # the prompt's scaffolding, so the tokenizer has merges for it too
    texts += ["### CUSTOMER: ", "### ACTION: ", " ".join(header)] * 8
    return texts


def build_tokenizer(texts: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=256
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(tok, out: Path) -> int:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CSV whose text trains the tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR holds a model")
    args = parser.parse_args(argv)
    if (args.out / "config.json").is_file() and not args.force:
        print(f"tiny model already built in {args.out}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(corpus(args.data))
    tok.save_pretrained(args.out)
    params = build_model(tok, args.out)
    print(f"built tiny model in {args.out}: vocab {len(tok)}, {params:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
