"""Build a tiny random-weight Llama and a byte-level BPE tokenizer, offline and deterministically.

vLLM needs a model directory; nothing can be downloaded here, so tests and the GPU
benchmark build one. The tokenizer is trained on Python standard-library source text
(always present); the weights come from a seeded generator. Sizes are chosen for
vLLM's CPU kernels (head_dim 32: the CPU attention backend rejects 16).

Run as a script: `python -m equinox.integrations.vllm.tiny_model OUT_DIR [--shape llama-2-7b]`.
Needs `torch`, `transformers` and `tokenizers` (all installed with vLLM).
"""

from __future__ import annotations

import argparse
import json
import logging
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<s>", "</s>", "<unk>", "<pad>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
MARKER_FILE = "equinox_tiny_model.json"


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers of a Llama-style model."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    head_dim: int = 32
    max_position_embeddings: int = 2048
    vocab_size: int = 2048


SHAPES: dict[str, ModelShape] = {
    "tiny": ModelShape(),
    # Llama-2-7B's architecture (vocab 32000); weights are never materialised for it
    # when vLLM runs with --load-format dummy, only config.json is read.
    "llama-2-7b": ModelShape(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, head_dim=128,
        max_position_embeddings=4096, vocab_size=32000,
    ),
}


def _corpus_files(max_bytes: int) -> Iterator[str]:
    """Paths of stdlib source files, sorted, up to `max_bytes` in total (deterministic)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        total += size
        yield str(path)


def build_tokenizer(out_dir: Path, vocab_size: int, max_corpus_bytes: int = 4_000_000) -> None:
    """Train a byte-level BPE tokenizer on stdlib sources and save it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train(list(_corpus_files(max_corpus_bytes)), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", model_max_length=1_000_000,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def _llama_config(shape: ModelShape, vocab_size: int):  # -> LlamaConfig (lazy import)
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=0, eos_token_id=1, pad_token_id=3, tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )


def build_model(out_dir: str | Path, shape: str = "tiny", seed: int = 0, with_weights: bool | None = None) -> Path:
    """Write a tokenizer and a Llama model of `shape` to `out_dir`; reuse it when already built.

    `with_weights=False` writes only config.json (for vLLM's `--load-format dummy`);
    the default is weights for `tiny` and none for larger shapes.
    """
    out = Path(out_dir)
    spec = SHAPES[shape]
    if with_weights is None:
        with_weights = shape == "tiny"
    marker = {"shape": shape, "seed": seed, "with_weights": with_weights, **asdict(spec)}
    marker_path = out / MARKER_FILE
    if marker_path.exists() and json.loads(marker_path.read_text()) == marker:
        logger.info("tiny model already built in %s", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out, spec.vocab_size)
    config = _llama_config(spec, spec.vocab_size)
    if with_weights:
        import torch
        from transformers import LlamaForCausalLM

        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(str(out), safe_serialization=True)
    else:
        config.save_pretrained(str(out))
    (out / "generation_config.json").unlink(missing_ok=True)  # no sampling defaults
    marker_path.write_text(json.dumps(marker, sort_keys=True))
    logger.info("built %s model in %s", shape, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build a model directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_model(args.out_dir, args.shape, args.seed)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
