"""GPU busy fraction, model-FLOPs utilisation and KV utilisation from the time series."""

from __future__ import annotations

from dataclasses import dataclass

from equinox.metrics.collector import TimeSeries


@dataclass(frozen=True)
class Utilisation:
    """Utilisation over a span: busy fraction, MFU (over the span and while busy), KV use."""

    busy_fraction: float
    mfu: float
    mfu_busy: float
    kv_utilisation: float
    mean_batch_seqs: float
    mean_batch_tokens: float
    num_steps: int

    @classmethod
    def of(cls, series: TimeSeries, span_s: float, peak_flops: float) -> Utilisation:
        """Aggregate the whole series over `span_s` seconds."""
        c = series.columns
        busy = sum(c["busy_s"])
        flops = sum(c["flops"])
        steps = int(sum(c["num_steps"]))
        span = max(span_s, 1e-9)
        kv = sum(c["kv_block_s"]) / (span * series.num_kv_blocks) if series.num_kv_blocks else 0.0
        return cls(
            busy / span,
            flops / (span * peak_flops) if peak_flops else 0.0,
            flops / (busy * peak_flops) if busy and peak_flops else 0.0,
            kv,
            sum(c["num_seqs"]) / steps if steps else 0.0,
            sum(c["num_tokens"]) / steps if steps else 0.0,
            steps,
        )

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return dict(self.__dict__)
