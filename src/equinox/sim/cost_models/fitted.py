"""Cost models fitted on measured profiles (Vidur, Splitwise, VTC A10G), one shared hybrid-batch form.

Every fitted model predicts
    t = overhead + L(num_tokens) + c_pair * prefill_attention_pairs + c_ctx * decode_context_tokens
        + c_seq * num_prefill_seqs
where L is a monotone piecewise-linear table of the token-proportional work (weight matmuls,
all-reduces): decode-only batches read L at n = batch size, prefill batches at n = prompt tokens,
and a hybrid batch at their sum, as in Sarathi-Serve's "linear ops scale with total tokens".
"""

from __future__ import annotations

from typing import Any

from equinox.errors import ConfigError
from equinox.sim.cost_models.piecewise import PiecewiseLinear
from equinox.sim.cost_models.store import deployment_key, load_profile
from equinox.sim.hardware import Deployment
from equinox.types import BatchShape

LINEAR_MEMO_SIZE = 1 << 16  # token counts whose L(n) a model remembers (at most 64 Ki floats, filled as met)


class TableCostModel:
    """Overhead + piecewise-linear token cost + attention and per-sequence terms (seconds)."""

    __slots__ = ("_ctx_s", "_decode_base", "_linear", "_linear_memo", "_overhead_s", "_pair_s", "_seq_s", "deployment",
                 "name")
    # Time never falls when a count of the batch grows (every term has a coefficient >= 0 and the
    # token table is non-decreasing): MoPE's iteration expert relies on it to skip predictions.
    is_monotone = True

    def __init__(
        self,
        name: str,
        deployment: Deployment,
        linear: PiecewiseLinear,
        *,
        overhead_s: float,
        pair_s: float,
        ctx_s: float,
        seq_s: float = 0.0,
    ) -> None:
        if min(overhead_s, pair_s, ctx_s, seq_s) < 0:
            raise ConfigError(f"cost model {name}: coefficients must be >= 0")
        self.name = name
        self.deployment = deployment
        self._linear = linear
        self._overhead_s = overhead_s
        self._pair_s = pair_s
        self._ctx_s = ctx_s
        self._seq_s = seq_s
        self._decode_base: dict[int, float] = {}  # batch size -> the terms of a decode-only batch before context
        # L(n) by token count n < LINEAR_MEMO_SIZE (-1.0: not looked up yet; L is never negative): a batch's
        # token count recurs step after step, and a list read is far cheaper than the table's bisection
        self._linear_memo: list[float] = []

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch` (0 for an empty batch)."""
        n = batch.num_prefill_tokens + batch.num_decode_seqs
        if n <= 0:
            return 0.0
        return (
            self._head(n, batch.prefill_attention_pairs)
            + self._ctx_s * batch.decode_context_tokens
            + self._seq_s * batch.num_prefill_seqs
        )

    def _head(self, n: int, prefill_attention_pairs: int) -> float:
        """The terms before the decode context's, summed in `iteration_time`'s order (`context_terms`' head)."""
        return self._overhead_s + self._linear_of(n) + self._pair_s * prefill_attention_pairs

    def context_terms(self, num_prefill_tokens: int, num_prefill_seqs: int, prefill_attention_pairs: int,
                      num_decode_seqs: int) -> tuple[float, float, float]:
        """(head, per_context_token, tail): `iteration_time` of a batch of these counts attending `c`
        decode-context tokens is `head + per_context_token * c + tail`, bit for bit (its terms summed in
        the same order), for every c. Adaptive batching predicts a point of its search at each step's
        context from these three numbers instead of a BatchShape and a table lookup.
        """
        n = num_prefill_tokens + num_decode_seqs
        if n <= 0:
            return 0.0, 0.0, 0.0
        return self._head(n, prefill_attention_pairs), self._ctx_s, self._seq_s * num_prefill_seqs

    def _linear_of(self, n: int) -> float:
        """`self._linear(n)` for a token count n >= 1, remembered below LINEAR_MEMO_SIZE."""
        memo = self._linear_memo
        if n < len(memo):
            value = memo[n]
            if value >= 0.0:
                return value
        elif n < LINEAR_MEMO_SIZE:
            memo.extend([-1.0] * (n + 1 - len(memo)))
        else:
            return self._linear(n)
        value = memo[n] = self._linear(n)
        return value

    def decode_time(self, num_seqs: int, context_tokens: int) -> float:
        """`iteration_time` of a decode-only batch, bit for bit, without building a BatchShape.

        The simulator calls it for every iteration of a decode run; the terms that depend
        only on the batch size are cached, summed in the same order as `iteration_time`.
        """
        if num_seqs <= 0:
            return 0.0
        base = self._decode_base.get(num_seqs)
        if base is None:
            base = self._decode_base[num_seqs] = self._head(num_seqs, 0)
        return base + self._ctx_s * context_tokens + self._seq_s * 0

    def linear_time_s(self, num_tokens: int) -> float:
        """The token-proportional part L(num_tokens) alone."""
        return self._linear(num_tokens)


def profile_entry(profile: str, deployment: Deployment) -> dict[str, Any]:
    """The coefficient entry of `profile` for `deployment`, or a ConfigError listing what exists."""
    data = load_profile(profile)
    table: dict[str, Any] = data["deployments"]
    key = deployment_key(deployment.gpu.name, deployment.model.name, deployment.tensor_parallel)
    aliases: dict[str, str] = data.get("model_aliases", {})
    alias = aliases.get(deployment.model.name)
    if key not in table and alias is not None:
        key = deployment_key(deployment.gpu.name, alias, deployment.tensor_parallel)
    if key not in table:
        raise ConfigError(
            f"cost model {profile!r} has no measured data for {deployment.name}; "
            f"it covers: {', '.join(sorted(table))}; use cost model 'roofline' for other deployments"
        )
    entry: dict[str, Any] = table[key]
    return entry


def covered_deployments(profile: str) -> list[tuple[str, str, int]]:
    """(gpu, model, tensor_parallel) of every deployment a profile has coefficients for."""
    out = []
    for entry in load_profile(profile)["deployments"].values():
        out.append((str(entry["gpu"]), str(entry["model"]), int(entry["tensor_parallel"])))
    return sorted(out)


def table_from_entry(name: str, deployment: Deployment, entry: dict[str, Any]) -> TableCostModel:
    """Build a TableCostModel from one JSON entry (all times in seconds)."""
    try:
        linear = PiecewiseLinear(entry["linear_tokens"], entry["linear_s"])
        return TableCostModel(
            name,
            deployment,
            linear,
            overhead_s=float(entry["overhead_s"]),
            pair_s=float(entry["prefill_pair_s"]),
            ctx_s=float(entry["decode_context_s"]),
            seq_s=float(entry.get("prefill_seq_s", 0.0)),
        )
    except KeyError as exc:
        raise ConfigError(f"cost-model profile {name}.json: entry for {deployment.name} lacks {exc}") from None


def _factory(profile: str) -> Any:
    def build(deployment: Deployment) -> TableCostModel:
        return table_from_entry(profile, deployment, profile_entry(profile, deployment))

    build.__name__ = f"build_{profile.replace('-', '_')}"
    build.__doc__ = f"Fitted {profile!r} cost model (ConfigError where the profile has no data)."
    return build


build_vidur = _factory("vidur")
build_splitwise = _factory("splitwise")
build_vtc_a10g = _factory("vtc-a10g")
