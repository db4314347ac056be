"""Hypothesis strategies for request bodies of the gateway's OpenAI endpoints (issue #12).

Shared by the HTTP fuzz test (`test_gateway_fuzz.py`) and the memory benchmark
(`benchmarks/gateway_fuzz_memory.py`): valid and invalid JSON, wrong types, huge and
negative output limits, deep nesting and raw bytes.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
token_limits = st.one_of(st.integers(min_value=-5, max_value=10), st.integers(min_value=2**31, max_value=2**70),
                         json_values)
messages = st.one_of(
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                    "content": st.one_of(st.text(max_size=40), json_values)}), max_size=3),
    json_values)
prompts = st.one_of(st.text(max_size=60), st.lists(st.integers(min_value=-1, max_value=50_000), max_size=8),
                    st.lists(st.text(max_size=10), max_size=3), json_values)
optional = {
    "max_tokens": token_limits, "max_completion_tokens": token_limits,
    "stream": st.one_of(st.booleans(), json_values),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), json_values),
    "vllm_xargs": st.one_of(st.dictionaries(st.text(max_size=8), scalars, max_size=3), json_values),
    "tenant": json_values, "temperature": scalars, "n": scalars,
}


def bodies(model: str) -> st.SearchStrategy[bytes]:
    """Request bodies, about a third of them valid requests for `model`."""
    return st.one_of(
        st.fixed_dictionaries({"model": st.one_of(st.just(model), json_values), "prompt": prompts,
                               "messages": messages}, optional=optional).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.integers(min_value=1, max_value=3000).map(lambda n: ("[" * n + "]" * n).encode()),
        st.integers(min_value=1, max_value=3000).map(
            lambda n: json.dumps({"model": model, "prompt": "x"}).replace('"x"', "[" * n + "1" + "]" * n).encode()),
    )
