"""Make a tiny Qwen2-style model with random weights and LoRA adapters for it, for the real-vLLM tests.

No hub is reachable here, so nothing is downloaded: the tokenizer is trained on a few lines of text with
`tokenizers`, the weights are random (seeded, so every run makes the same files), and the adapters are made with
`peft` with non-zero B matrices, so an adapter really changes what the model generates.

Run with the vLLM environment's python (scripts/install_vllm.sh): ``python make_tiny_model.py OUT_DIR``.
Makes OUT_DIR/model, OUT_DIR/lora-r8 (rank 8 on q_proj/v_proj), OUT_DIR/lora-r8-b (another rank 8) and
OUT_DIR/lora-r64 (rank 64, above the tests' --max-lora-rank 8).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A small model with random weights still answers every request.",
    "LoRA adapters change the attention projections of a base model.",
    "Kubernetes schedules pods; the runtime sidecar loads adapters into the engine.",
    "Hello, world! How are you today? 0123456789",
] * 20


def make_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TEXT, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def make_model(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(out)
    config = Qwen2Config(
        vocab_size=1024,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head size 32: the CPU attention backend wants at least that
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(out, safe_serialization=True)


def make_adapter(base: Path, out: Path, rank: int, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out, safe_serialization=True)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(base)
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))


def main() -> None:
    root = Path(sys.argv[1])
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    make_tokenizer(model)
    make_model(model)
    for name, rank, seed in (("lora-r8", 8, 1), ("lora-r8-b", 8, 2), ("lora-r64", 64, 3)):
        make_adapter(model, root / name, rank, seed)
    print(root)


if __name__ == "__main__":
    main()
