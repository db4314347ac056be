"""Typed parameters per policy (issue 11 item 5): each policy declares them, the registry checks them."""

from __future__ import annotations

import dataclasses

import pytest

from equinox.errors import ConfigError
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policies.equinox_params import EquinoxParams
from equinox.scheduling.policies.vtc_params import VtcParams
from equinox.scheduling.policy import (
    make_policy,
    params_for_policy,
    parse_policy_params,
    policy_names,
    policy_param_defaults,
    policy_param_names,
    policy_params,
    policy_params_class,
)


def test_every_policy_declares_its_parameters() -> None:
    expected = {
        "fcfs": (None, []), "rpm": (None, []),
        "vtc": (VtcParams, ["cost_function"]), "lcf": (VtcParams, ["cost_function"]),
        "vtc-predict": (VtcParams, sorted(f.name for f in dataclasses.fields(VtcParams))),
        "equinox": (EquinoxParams, sorted(f.name for f in dataclasses.fields(EquinoxParams))),
    }
    assert set(expected) <= set(policy_names())
    for name, (cls, names) in expected.items():
        assert policy_params_class(name) is cls, name
        assert policy_param_names(name) == names, name


@pytest.mark.parametrize(
    ("policy", "params", "message"),
    [
        ("fcfs", {"alpha": 0.5}, "policy 'fcfs' takes no parameters, got 'alpha'"),
        ("rpm", {"window": 30}, "policy 'rpm' takes no parameters, got 'window'"),
        ("vtc", {"alpha": 0.5}, "unknown vtc parameter 'alpha'; known: cost_function"),
        ("lcf", {"ema_alpha": 0.5}, "unknown lcf parameter 'ema_alpha'; known: cost_function"),
        ("vtc-predict", {"ema_alpha": "fast"}, "vtc-predict parameter 'ema_alpha' must be a number"),
        ("equinox", {"alhpa": 1}, "unknown equinox parameter 'alhpa'; known: adaptive_batching, aging_tokens_per_s"),
        ("equinox", {"proactive": "maybe"}, "equinox parameter 'proactive' must be a bool"),
    ],
)
def test_make_policy_names_the_bad_key_and_the_valid_ones(policy: str, params: dict[str, object],
                                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_policy(policy, PolicyConfig(params=params, rpm_limit=5))
    with pytest.raises(ConfigError, match=message):
        parse_policy_params(policy, params)


def test_parse_gives_typed_values() -> None:
    p = parse_policy_params("equinox", {"alpha": "0.5", "proactive": "off", "max_batched_tokens": 4096.0})
    assert p == EquinoxParams(alpha=0.5, proactive=False, max_batched_tokens=4096)
    assert parse_policy_params("fcfs", {}) is None


def test_params_for_policy_keeps_only_its_own() -> None:
    given = {"alpha": 0.5, "beta": 0.1, "cost_function": "profile", "ema_alpha": 0.2}
    assert params_for_policy("equinox", given) == {"alpha": 0.5, "beta": 0.1}
    assert params_for_policy("vtc", given) == {"cost_function": "profile"}
    assert params_for_policy("vtc-predict", given) == {"cost_function": "profile", "ema_alpha": 0.2}
    assert params_for_policy("fcfs", given) == {}


def test_defaults_and_the_params_a_policy_runs_with() -> None:
    assert policy_param_defaults("vtc") == {"cost_function": "linear"}
    assert policy_param_defaults("equinox")["beta"] == EquinoxParams().beta
    assert policy_param_defaults("fcfs") == {}
    assert policy_params(make_policy("vtc")) == {"cost_function": "linear"}
    assert policy_params(make_policy("equinox", PolicyConfig(params={"beta": 0.5})))["beta"] == 0.5
    assert policy_params(make_policy("fcfs")) == {}
