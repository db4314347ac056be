"""Gateway configuration (TOML) and tenant authentication by hashed API key.

    [gateway]                 # listener, policy and fault handling (all optional)
    host = "127.0.0.1"
    port = 8080
    policy = "equinox"        # equinox | vtc | fcfs | rpm | ... (the simulator's registry)
    ...
    [policy_params]           # policy-specific knobs (as in the simulator)
    [concurrency]             # adaptive per-backend window
    [platform]                # optional: the hardware behind the backends, for RFC's cost constants
    gpu = "a100-80gb"         # names of the simulator's hardware registry (`equinox hardware`)
    model = "llama-3-8b"
    tensor_parallel = 1       # without [platform] the policy uses token proxies
    [[backends]]              # one table per OpenAI-compatible engine
    url = "http://127.0.0.1:8000"
    [[tenants]]               # one table per tenant; keys are stored hashed
    name = "alice"
    key_sha256 = "…"          # `equinox gateway --hash-key KEY` prints it

Keys are compared by SHA-256 digest: API keys are long random strings, so a fast,
unsalted hash is enough to keep the config file from holding usable secrets (as
GitHub and PyPI store tokens). See docs/gateway.md.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError
from equinox.scheduling.interface import Platform, PolicyConfig
from equinox.tomlfile import read_toml

HASH_PREFIX = "sha256:"


def hash_key(key: str) -> str:
    """The hex SHA-256 digest of an API key, as stored in the config."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(prefix: str = "eqx-") -> str:
    """A fresh random API key (32 bytes of entropy)."""
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TenantConfig:
    """One tenant: its API key digests, weight and limits."""

    name: str
    key_hashes: tuple[str, ...]
    weight: float = 1.0
    max_queue: int = 256  # waiting requests of this tenant before 429
    max_tokens: int = 4096  # largest max_tokens a request may ask for (also the default)
    rpm_limit: float | None = None  # only with policy "rpm"


@dataclass(frozen=True)
class BackendConfig:
    """One OpenAI-compatible engine."""

    url: str
    name: str = ""
    models: tuple[str, ...] = ()  # empty: discovered from GET /v1/models
    max_concurrency: int = 256  # upper bound of the adaptive window
    api_key: str | None = None  # sent upstream as a Bearer token
    is_vllm: bool = True  # forward the tenant in vllm_xargs and ask for continuous usage


@dataclass(frozen=True)
class ConcurrencyConfig:
    """Adaptive per-backend concurrency window (AIMD on measured TTFT and inter-token latency)."""

    initial_window: float = 16.0
    min_window: float = 1.0
    target_ttft_s: float = 2.0  # upstream TTFT above this shrinks the window
    target_itl_s: float = 0.25  # mean inter-token latency above this shrinks the window
    decrease_factor: float = 0.8
    decrease_cooldown_s: float = 1.0  # at most one decrease per cooldown


@dataclass(frozen=True)
class PlatformConfig:
    """The `[platform]` table: GPU and model (hardware-registry names) the backends run, or nothing."""

    gpu: str = ""
    model: str = ""
    tensor_parallel: int = 1

    def platform(self) -> Platform:
        """The Platform the gateway's policy schedules on (token proxies when not configured)."""
        if not self.gpu:
            return Platform.proxy()
        from equinox.sim.hardware import make_deployment

        return make_deployment(self.gpu, self.model, self.tensor_parallel).platform()


@dataclass(frozen=True)
class GatewayConfig:
    """Everything `equinox gateway` needs."""

    backends: tuple[BackendConfig, ...]
    tenants: tuple[TenantConfig, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    policy: str = "equinox"
    prompt_weight: float = 1.0
    output_weight: float = 2.0
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    tenant_key: str = "tenant"  # vllm_xargs key the vLLM plug-in reads
    max_queue_total: int = 4096
    max_body_bytes: int = 8 * 1024 * 1024
    queue_timeout_s: float = 300.0  # waiting longer than this: 503
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 60.0  # upstream silent this long before its first token: retry elsewhere
    stall_timeout_s: float = 60.0  # upstream silent this long after its first token: error event
    max_attempts: int = 3  # backends tried before the first token
    backend_cooldown_s: float = 5.0  # a failed backend gets no traffic for this long (health probes revive it)
    health_interval_s: float = 2.0
    usage_report_interval_s: float = 0.05  # synthesised StepReports for on_step accounting
    chars_per_token: float = 4.0  # prompt-length estimate for text prompts
    retry_after_s: int = 1  # Retry-After header on 429
    max_json_depth: int = 64  # deeper request bodies: 400 (issue #12: unbounded nesting crashed the parser)
    header_timeout_s: float = 10.0  # a connection must deliver a request's headers within this: else closed
    body_timeout_s: float = 30.0  # an authenticated request's body must arrive within this: else 408
    keep_alive_timeout_s: float = 5.0  # idle keep-alive connections are closed after this
    max_pending_connections: int = 256  # connections still sending headers (not yet authenticated); the oldest
    # is closed when a new one would pass the cap
    drain_timeout_s: float = 30.0  # on SIGTERM: running streams get this long to finish, then an error event
    state_file: str = ""  # SQLite file holding the policy's fairness counters across restarts ("" = none)
    state_interval_s: float = 10.0  # how often the counters are written to state_file (and once at shutdown)
    admin_key_hashes: tuple[str, ...] = ()  # keys allowed to read /metrics and the detailed /health
    public_metrics: bool = False  # true: /metrics (tenant and backend names) open to anyone who can connect

    def policy_config(self) -> PolicyConfig:
        """The PolicyConfig the gateway's policy is built with."""
        rpm = {t.name: t.rpm_limit for t in self.tenants if t.rpm_limit is not None}
        return PolicyConfig(
            tenant_weights={t.name: t.weight for t in self.tenants},
            prompt_weight=self.prompt_weight, output_weight=self.output_weight,
            rpm_limit=None, rpm_limits=rpm, params=dict(self.policy_params),
        )


class Authenticator:
    """Maps an API key to its tenant by digest (a client can never choose its tenant)."""

    def __init__(self, tenants: tuple[TenantConfig, ...]) -> None:
        self._by_hash: dict[str, TenantConfig] = {}
        for tenant in tenants:
            for digest in tenant.key_hashes:
                self._by_hash[digest] = tenant

    def tenant_of(self, key: str | None) -> TenantConfig | None:
        """The tenant owning `key`, or None for a missing or unknown key."""
        if not key:
            return None
        digest = hash_key(key)
        tenant = self._by_hash.get(digest)
        # compare_digest keeps the final check constant-time; the dict lookup is on a digest.
        if tenant is not None and any(hmac.compare_digest(digest, h) for h in tenant.key_hashes):
            return tenant
        return None


def is_admin(config: GatewayConfig, key: str | None) -> bool:
    """True when `key` is one of the admin keys (for /metrics and the detailed /health)."""
    if not key or not config.admin_key_hashes:
        return False
    digest = hash_key(key)
    return any(hmac.compare_digest(digest, h) for h in config.admin_key_hashes)


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a request: `Authorization: Bearer KEY` (or `x-api-key: KEY`)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


# Parsing ------------------------------------------------------------------------------

_GATEWAY_KEYS = {
    f.name for f in fields(GatewayConfig)
    if f.name not in ("backends", "tenants", "concurrency", "policy_params", "admin_key_hashes", "platform")
} | {"admin_key_sha256", "admin_key_sha256s"}
_INT_KEYS = ("max_queue_total", "max_body_bytes", "max_attempts", "retry_after_s", "max_json_depth",
             "max_pending_connections")
_TOP_KEYS = {"gateway", "policy_params", "concurrency", "backends", "tenants", "platform"}


def _check_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _positive(value: Any, where: str, *, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not (value > 0 and math.isfinite(value)):
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")


def _digest(value: Any, where: str) -> str:
    text = str(value).strip().lower()
    if text.startswith(HASH_PREFIX):
        text = text[len(HASH_PREFIX):]
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(f"{where}: expected a hex SHA-256 digest (64 hex digits); "
                          "run `equinox gateway --hash-key KEY` to make one")
    return text


def _tenant(data: Any, i: int, source: str) -> TenantConfig:
    from equinox.integrations.vllm.settings import check_tenant_id

    where = f"{source}: [[tenants]] #{i + 1}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    _check_keys(data, {"name", "key_sha256", "key_sha256s", "weight", "max_queue", "max_tokens", "rpm_limit"}, where)
    name = data.get("name")
    problem = check_tenant_id(name)
    if problem is not None:
        raise ConfigError(f"{where}: name: {problem}")
    raw = list(data.get("key_sha256s", []))
    if "key_sha256" in data:
        raw.append(data["key_sha256"])
    if not raw:
        raise ConfigError(f"{where} ({name}): needs key_sha256 (run `equinox gateway --hash-key KEY`)")
    hashes = tuple(_digest(h, f"{where} ({name}) key_sha256") for h in raw)
    weight = data.get("weight", 1.0)
    _positive(weight, f"{where} ({name}) weight")
    max_queue = data.get("max_queue", 256)
    _positive(max_queue, f"{where} ({name}) max_queue", integer=True)
    max_tokens = data.get("max_tokens", 4096)
    _positive(max_tokens, f"{where} ({name}) max_tokens", integer=True)
    rpm = data.get("rpm_limit")
    if rpm is not None:
        _positive(rpm, f"{where} ({name}) rpm_limit")
    return TenantConfig(str(name), hashes, float(weight), int(max_queue), int(max_tokens),
                        None if rpm is None else float(rpm))


def _backend(data: Any, i: int, source: str) -> BackendConfig:
    where = f"{source}: [[backends]] #{i + 1}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    _check_keys(data, {"url", "name", "models", "max_concurrency", "api_key", "is_vllm"}, where)
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url must be an http(s) URL such as \"http://127.0.0.1:8000\", got {url!r}")
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{where}: models must be a list of model names")
    max_conc = data.get("max_concurrency", 256)
    _positive(max_conc, f"{where} max_concurrency", integer=True)
    return BackendConfig(
        url=url.rstrip("/"), name=str(data.get("name") or f"backend-{i}"), models=tuple(models),
        max_concurrency=int(max_conc), api_key=data.get("api_key"), is_vllm=bool(data.get("is_vllm", True)),
    )


def config_from_dict(data: Mapping[str, Any], source: str = "(dict)") -> GatewayConfig:
    """Build a GatewayConfig from parsed TOML; every mistake names the file and the key."""
    _check_keys(data, _TOP_KEYS, source)
    gw = data.get("gateway", {})
    if not isinstance(gw, dict):
        raise ConfigError(f"{source}: [gateway] must be a table")
    _check_keys(gw, _GATEWAY_KEYS, f"{source}: [gateway]")
    backends = data.get("backends", [])
    if not isinstance(backends, list) or not backends:
        raise ConfigError(f"{source}: at least one [[backends]] table with a url is required")
    tenants = data.get("tenants", [])
    if not isinstance(tenants, list) or not tenants:
        raise ConfigError(f"{source}: at least one [[tenants]] table is required")
    tenant_list = tuple(_tenant(t, i, source) for i, t in enumerate(tenants))
    names = [t.name for t in tenant_list]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: tenant names must be unique, got {names}")
    seen: dict[str, str] = {}
    for t in tenant_list:
        for h in t.key_hashes:
            if h in seen and seen[h] != t.name:
                raise ConfigError(f"{source}: the same key is configured for tenants {seen[h]!r} and {t.name!r}")
            seen[h] = t.name
    backend_list = tuple(_backend(b, i, source) for i, b in enumerate(backends))
    conc = data.get("concurrency", {})
    if not isinstance(conc, dict):
        raise ConfigError(f"{source}: [concurrency] must be a table")
    _check_keys(conc, {f.name for f in fields(ConcurrencyConfig)}, f"{source}: [concurrency]")
    for key, value in conc.items():
        _positive(value, f"{source}: [concurrency] {key}")
    params = data.get("policy_params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: [policy_params] must be a table")
    gw = dict(gw)
    admin = list(gw.pop("admin_key_sha256s", []))
    if "admin_key_sha256" in gw:
        admin.append(gw.pop("admin_key_sha256"))
    admin_hashes = tuple(_digest(h, f"{source}: [gateway] admin_key_sha256") for h in admin)
    for key, value in gw.items():
        if key == "public_metrics":
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: [gateway] public_metrics must be true or false, got {value!r}")
        elif key == "state_file":
            if not isinstance(value, str):
                raise ConfigError(f"{source}: [gateway] state_file must be a file path (a string), got {value!r}")
        elif key in ("host", "policy", "tenant_key"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: [gateway] {key} must be a non-empty string, got {value!r}")
        elif key == "port":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
                raise ConfigError(f"{source}: [gateway] port must be an integer in 0..65535, got {value!r}")
        else:
            _positive(value, f"{source}: [gateway] {key}", integer=key in _INT_KEYS)
    tenant_hashes = {h for t in tenant_list for h in t.key_hashes}
    if tenant_hashes & set(admin_hashes):
        raise ConfigError(f"{source}: [gateway] admin_key_sha256 is also a tenant's key; use a separate key")
    cfg = GatewayConfig(backends=backend_list, tenants=tenant_list, policy_params=dict(params),
                        concurrency=ConcurrencyConfig(**{k: float(v) for k, v in conc.items()}),
                        platform=_platform(data.get("platform", {}), source),
                        admin_key_hashes=admin_hashes, **gw)
    _check_policy(cfg, source)
    return cfg


def _platform(table: Any, source: str) -> PlatformConfig:
    where = f"{source}: [platform]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    _check_keys(table, {f.name for f in fields(PlatformConfig)}, where)
    gpu, model, tp = table.get("gpu", ""), table.get("model", ""), table.get("tensor_parallel", 1)
    if not table:
        return PlatformConfig()
    if not (isinstance(gpu, str) and gpu and isinstance(model, str) and model):
        raise ConfigError(f"{where} needs both gpu and model (names of the hardware registry), got {dict(table)}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ConfigError(f"{where} tensor_parallel must be an integer >= 1, got {tp!r}")
    cfg = PlatformConfig(gpu, model, tp)
    try:
        cfg.platform()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def _check_policy(cfg: GatewayConfig, source: str) -> None:
    from equinox.scheduling.policy import make_policy

    try:
        make_policy(cfg.policy, cfg.policy_config())
    except ConfigError as exc:
        raise ConfigError(f"{source}: [gateway] policy: {exc}") from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file."""
    p = Path(path)
    return config_from_dict(read_toml(p, "gateway config file"), str(p))
