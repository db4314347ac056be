"""Tenant mixes where user-side and resource-side fairness disagree (issue 11 item 2).

Each scenario is a few tenants, each with its own lengths and arrival process and a *demand
share*: the fraction of the scenario's weighted-token demand (w_p * prompt + w_q * output,
VTC's prices) it sends. At rate_scale 1 the scenario offers BASE_TOKENS_PER_S weighted tokens
per second in total; experiments place it relative to a platform's measured capacity with
rate_scale. Every scenario has one tenant clearly within its fair share (its demand share is
well under its weight share), so the user-side and isolation metrics have a tenant to protect.

Lengths come from shipped statistics only (presets and ServeGen client tables), never from
../shared, so the package runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from equinox.errors import ConfigError, UnknownNameError
from equinox.workload.schema import Workload
from equinox.workload.synthetic import (
    ConstantRate,
    GeneratorConfig,
    LengthModel,
    QuantileTable,
    RenewalArrivals,
    TenantProfile,
    fixed_lengths,
    generate,
)

BASE_TOKENS_PER_S = 3000.0  # weighted tokens/s offered at rate_scale 1 (about one Llama-2-7B A10G)
DEFAULT_SCENARIO_S = 300.0
PROMPT_WEIGHT, OUTPUT_WEIGHT = 1.0, 2.0  # VTC's prices: demand shares are in these units
_MEAN_SAMPLES = 20_000


@dataclass(frozen=True)
class ScenarioTenant:
    """One tenant of a scenario: lengths, share of the weighted-token demand, burstiness, weight."""

    name: str
    lengths: Callable[[], LengthModel]  # built lazily (preset tables are read on first use)
    demand_share: float
    cv: float = 1.0  # inter-arrival coefficient of variation (1: Poisson; > 1: bursty, Gamma renewal)
    weight: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    """A named tenant mix and why its two sides of fairness disagree."""

    name: str
    description: str
    tenants: tuple[ScenarioTenant, ...]

    @property
    def within_share(self) -> tuple[str, ...]:
        """Tenants whose demand share is at most half their weight share (the ones to protect)."""
        total_w = sum(t.weight or 1.0 for t in self.tenants)
        return tuple(t.name for t in self.tenants if t.demand_share <= 0.5 * (t.weight or 1.0) / total_w)


def _preset_lengths(name: str) -> LengthModel:
    from equinox.workload.presets import preset_stats

    lens = preset_stats(name)["lengths"]
    probs = tuple(float(p) for p in lens["probs"])
    return LengthModel(QuantileTable(probs, tuple(float(v) for v in lens["prompt_quantiles"])),
                       QuantileTable(probs, tuple(float(v) for v in lens["output_quantiles"])),
                       correlation=float(lens.get("normal_correlation", 0.0)))


def _servegen_client(model: str, client: int) -> dict[str, object]:
    from equinox.workload.presets import preset_stats

    for c in preset_stats("servegen-multitenant")["clients"]:
        if c["model"] == model and int(c["client"]) == client:
            return dict(c)
    raise ConfigError(f"servegen client {model}/chunk-{client} is not in the shipped statistics")


def _servegen_lengths(model: str, client: int) -> LengthModel:
    from equinox.workload.presets import preset_stats

    probs = tuple(float(p) for p in preset_stats("servegen-multitenant")["probs"])
    c = _servegen_client(model, client)
    return LengthModel(QuantileTable(probs, tuple(float(v) for v in c["prompt_quantiles"])),  # type: ignore[attr-defined]
                       QuantileTable(probs, tuple(float(v) for v in c["output_quantiles"])))  # type: ignore[attr-defined]


def _servegen_cv(model: str, client: int) -> float:
    return float(np.median(_servegen_client(model, client)["hourly_cv"]))  # type: ignore[call-overload]


def _fixed(prompt: int, output: int) -> Callable[[], LengthModel]:
    return lambda: fixed_lengths(prompt, output)


# The bursty and steady ServeGen clients (Alibaba Bailian, m-mid chunk-14: median hourly
# inter-arrival CV 3.1; m-small chunk-36: CV 1.03).
BURSTY_CLIENT = ("m-mid", 14)
STEADY_CLIENT = ("m-small", 36)

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario(
            "holistic-prefill-decode",
            "prefill-heavy (1536 in/16 out) vs decode-heavy (32 in/512 out) tenants at equal token prices, "
            "plus a light chat tenant (128/128): VTC's prices misstate GPU cost",
            (ScenarioTenant("prefill", _fixed(1536, 16), 0.45),
             ScenarioTenant("decode", _fixed(32, 512), 0.45),
             ScenarioTenant("chat", _fixed(128, 128), 0.10)),
        ),
        Scenario(
            "holistic-long-context",
            "a long-context tenant (6144 in/128 out) holding KV memory against a heavy and a light chat "
            "tenant (256/256)",
            (ScenarioTenant("long-context", _fixed(6144, 128), 0.45),
             ScenarioTenant("chat-heavy", _fixed(256, 256), 0.45),
             ScenarioTenant("chat-light", _fixed(256, 256), 0.10)),
        ),
        Scenario(
            "holistic-bursty",
            "a bursty ServeGen client (m-mid chunk-14, CV 3.1) near its share vs a steady one flooding "
            "(m-small chunk-36, CV 1.0) and a light steady tenant with the steady client's lengths",
            (ScenarioTenant("bursty", lambda: _servegen_lengths(*BURSTY_CLIENT), 0.30, cv=_servegen_cv(*BURSTY_CLIENT)),
             ScenarioTenant("steady-heavy", lambda: _servegen_lengths(*STEADY_CLIENT), 0.60,
                            cv=_servegen_cv(*STEADY_CLIENT)),
             ScenarioTenant("steady-light", lambda: _servegen_lengths(*STEADY_CLIENT), 0.10,
                            cv=_servegen_cv(*STEADY_CLIENT))),
        ),
        Scenario(
            "holistic-weighted",
            "weights 1:2:4 (256/256 each); the weight-4 tenant sends a tenth of the demand",
            (ScenarioTenant("w1", _fixed(256, 256), 0.45, weight=1.0),
             ScenarioTenant("w2", _fixed(256, 256), 0.45, weight=2.0),
             ScenarioTenant("w4", _fixed(256, 256), 0.10, weight=4.0)),
        ),
        Scenario(
            "holistic-lmsys",
            "a light LMSYS-shaped chat tenant (lmsys-chat lengths, Poisson) against a heavy one and a "
            "long-prompt summarisation tenant (arxiv-summarization lengths)",
            (ScenarioTenant("lmsys-light", lambda: _preset_lengths("lmsys-chat"), 0.12),
             ScenarioTenant("lmsys-heavy", lambda: _preset_lengths("lmsys-chat"), 0.40),
             ScenarioTenant("summarise", lambda: _preset_lengths("arxiv-summarization"), 0.48)),
        ),
    )
}


def scenario_key(name: str) -> str | None:
    """The canonical scenario name for `name` (underscores accepted), or None."""
    key = name.strip().lower().replace("_", "-")
    return key if key in SCENARIOS else None


@cache
def _mean_weighted_tokens(scenario: str, tenant: int) -> float:
    t = SCENARIOS[scenario].tenants[tenant]
    prompt, output = t.lengths().sample(np.random.default_rng(12345), _MEAN_SAMPLES)
    return float(PROMPT_WEIGHT * prompt.mean() + OUTPUT_WEIGHT * output.mean())


def tenant_rates(name: str, rate_scale: float = 1.0) -> dict[str, float]:
    """Requests/s of each tenant at `rate_scale` (demand share x base rate / mean weighted tokens)."""
    key = scenario_key(name)
    if key is None:
        raise UnknownNameError("scenario", name, list(SCENARIOS))
    return {t.name: t.demand_share * BASE_TOKENS_PER_S * rate_scale / _mean_weighted_tokens(key, i)
            for i, t in enumerate(SCENARIOS[key].tenants)}


def generate_scenario(name: str, *, seed: int = 0, duration_s: float | None = None, rate_scale: float = 1.0,
                      num_tenants: int | None = None) -> Workload:
    """Sample scenario `name` (Gamma-renewal arrivals per tenant, independent seeded streams)."""
    key = scenario_key(name)
    if key is None:
        raise UnknownNameError("scenario", name, list(SCENARIOS))
    sc = SCENARIOS[key]
    if num_tenants is not None and num_tenants != len(sc.tenants):
        raise ConfigError(f"scenario {key!r} has {len(sc.tenants)} tenants; drop --tenants or pass "
                          f"{len(sc.tenants)}")
    if not (rate_scale > 0 and np.isfinite(rate_scale)):
        raise ConfigError(f"rate_scale must be > 0, got {rate_scale}")
    duration = DEFAULT_SCENARIO_S if duration_s is None else float(duration_s)
    if not duration > 0:
        raise ConfigError(f"duration_s must be > 0, got {duration_s}")
    rates = tenant_rates(key, rate_scale)
    profiles = [TenantProfile(t.name, RenewalArrivals(ConstantRate(rates[t.name]), t.cv), t.lengths(), t.weight)
                for t in sc.tenants]
    return generate(profiles, GeneratorConfig(
        duration, seed, key, f"equinox scenario {key}: {sc.description}",
        tenant_assignment="scenario tenants: " + ", ".join(
            f"{t.name} (demand share {t.demand_share:g}" + (f", weight {t.weight:g}" if t.weight else "")
            + (f", CV {t.cv:.2f}" if t.cv != 1.0 else "") + ")" for t in sc.tenants)))
