"""Token counts for traces that carry text (ShareGPT, vLLM prompt files).

A real tokenizer is used when one is installed and named (`tokenizer=` load option: a
Hugging Face name or a local tokenizer.json, through `transformers` or `tokenizers`).
Otherwise the count is estimated as ceil(characters / 4), the usual rule of thumb for
English text with BPE tokenizers (about 4 characters per token); every workload built
this way carries a warning saying so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from equinox.errors import ConfigError

CHARS_PER_TOKEN = 4.0
ESTIMATE_LABEL = "token counts estimated as ceil(chars / 4) (no tokenizer given)"


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` (at least 1)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def make_token_counter(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    """(count function, description); the estimate when `tokenizer` is None."""
    if not tokenizer:
        return estimate_tokens, ESTIMATE_LABEL
    try:
        from tokenizers import Tokenizer  # type: ignore[import-not-found]

        tok = Tokenizer.from_file(tokenizer) if tokenizer.endswith(".json") else Tokenizer.from_pretrained(tokenizer)
        return (lambda text: max(1, len(tok.encode(text, add_special_tokens=False).ids))), f"tokenizer {tokenizer}"
    except ImportError:
        pass
    except Exception as exc:
        raise ConfigError(f"cannot load tokenizer {tokenizer!r}: {exc}") from None
    try:
        from transformers import AutoTokenizer  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            f"tokenizer {tokenizer!r} requested but neither 'tokenizers' nor 'transformers' is installed; "
            "install one, or omit the tokenizer to use the 4-chars-per-token estimate"
        ) from None
    try:
        hf = AutoTokenizer.from_pretrained(tokenizer)
    except Exception as exc:
        raise ConfigError(f"cannot load tokenizer {tokenizer!r}: {exc}") from None
    return (lambda text: max(1, len(hf(text, add_special_tokens=False).input_ids))), f"tokenizer {tokenizer}"
