"""`equinox vllm ...`: launch vLLM's OpenAI server with the Equinox scheduler plug-in.

    equinox vllm serve MODEL [--policy vtc] [--config equinox.toml] [-- extra vLLM arguments]
    equinox vllm tiny-model DIR      # a tiny random Llama + tokenizer, built offline

The server runs in the Python that has vLLM (`--python`, EQUINOX_VLLM_PYTHON, or this
interpreter); the command checks the config and the policy name before starting it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from equinox.errors import ConfigError

SCHEDULER_CLASSES = {
    "auto": "equinox.integrations.vllm.EquinoxScheduler",
    "sync": "equinox.integrations.vllm.EquinoxSyncScheduler",
    "async": "equinox.integrations.vllm.EquinoxAsyncScheduler",
}


class _SplitAtDoubleDash(argparse.ArgumentParser):
    """Parses the arguments before `--`; everything after it becomes `vllm_args`, untouched."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        head = list(sys.argv[1:] if args is None else args)
        tail: list[str] = []
        if "--" in head:
            cut = head.index("--")
            head, tail = head[:cut], head[cut + 1:]
        parsed, rest = super().parse_known_args(head, namespace)
        parsed.vllm_args = tail
        return parsed, rest


def add_vllm_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `vllm serve` and `vllm tiny-model`."""
    vllm = subparsers.add_parser("vllm", help="run vLLM with the Equinox scheduler",
                                 description="Run vLLM's OpenAI server with the Equinox scheduler plug-in.")
    sub = vllm.add_subparsers(dest="vllm_command", metavar="SUBCOMMAND", parser_class=_SplitAtDoubleDash)
    serve = sub.add_parser(
        "serve", help="start vLLM's OpenAI server with Equinox",
        usage="%(prog)s MODEL [options] [-- extra vLLM arguments]",
        description="Start vLLM's OpenAI-compatible server with Equinox scheduling. "
                    "Arguments after `--` go to vLLM unchanged.",
    )
    serve.add_argument("model", help="model name or directory, as vLLM's --model takes it")
    serve.add_argument("--policy", help="policy name (overrides the config file; default: vtc)")
    serve.add_argument("--config", help="plug-in config file (TOML): tenant weights, policy parameters, metrics")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument("--python", default=None,
                       help="Python interpreter with vLLM installed (default: $EQUINOX_VLLM_PYTHON or this one)")
    serve.add_argument("--scheduler", choices=sorted(SCHEDULER_CLASSES), default="auto",
                       help="scheduler base: auto picks vLLM's AsyncScheduler when the engine schedules "
                            "asynchronously (GPUs), the synchronous one otherwise (default: auto)")
    serve.add_argument("--metrics-file", default=None,
                       help="where the scheduler writes its metrics snapshot for /metrics "
                            "(default: a file in the temp directory named after the port)")
    serve.add_argument("--dry-run", action="store_true", help="print the command and environment, do not start")
    serve.set_defaults(func=run_serve)

    tiny = sub.add_parser("tiny-model", help="build a tiny random-weight Llama and tokenizer (offline)")
    tiny.add_argument("out_dir", help="directory to write the model to")
    tiny.add_argument("--shape", default="tiny", choices=["tiny", "llama-2-7b"],
                      help="tiny: real random weights; llama-2-7b: config only, for --load-format dummy")
    tiny.add_argument("--python", default=None, help="Python interpreter with torch/transformers (vLLM's)")
    tiny.set_defaults(func=run_tiny_model)
    vllm.set_defaults(func=lambda args: (vllm.print_help(), 2)[1])


def _python(args: argparse.Namespace) -> str:
    return str(args.python or os.environ.get("EQUINOX_VLLM_PYTHON") or sys.executable)


def _check_plugin_config(args: argparse.Namespace) -> None:
    """Fail before launching when the config file or policy name is wrong."""
    from equinox.integrations.vllm.settings import ENV_CONFIG, ENV_POLICY, load_settings
    from equinox.scheduling.policy import policy_names

    env: dict[str, str] = {}
    if args.config:
        env[ENV_CONFIG] = args.config
    if args.policy:
        env[ENV_POLICY] = args.policy
    settings = load_settings(env)
    known = policy_names()
    if settings.policy.lower() not in known:
        raise ConfigError(f"unknown policy {settings.policy!r}; known: {', '.join(known)}")
    if settings.global_counters is not None:  # a policy without counters cannot sync (the engine would refuse)
        from equinox.scheduling.global_counters import CounterClient
        from equinox.scheduling.policy import make_policy

        CounterClient("check", make_policy(settings.policy, settings.policy_config()))


def run_serve(args: argparse.Namespace) -> int:
    """Start the server in the foreground; return its exit status."""
    from equinox.integrations.vllm.launcher import ServeSpec, build_command

    _check_plugin_config(args)
    extra = list(getattr(args, "vllm_args", []))
    metrics_file = args.metrics_file or str(Path(tempfile.gettempdir()) / f"equinox-vllm-metrics-{args.port}.json")
    spec = ServeSpec(
        model=args.model, policy=args.policy, config_file=args.config, metrics_file=metrics_file,
        host=args.host, port=args.port, scheduler_cls=SCHEDULER_CLASSES[args.scheduler],
        python=_python(args), extra_args=extra,
    )
    argv, env = build_command(spec)
    if args.dry_run:
        for key in sorted(k for k in env if k.startswith("EQUINOX_") or k == "PYTHONPATH"):
            if os.environ.get(key) != env[key]:
                print(f"{key}={shlex.quote(env[key])}")
        print(shlex.join(argv))
        return 0
    try:
        return subprocess.call(argv, env=env)
    except FileNotFoundError:
        raise ConfigError(
            f"Python interpreter {spec.python!r} not found; pass --python or set EQUINOX_VLLM_PYTHON"
        ) from None
    except KeyboardInterrupt:  # the server got the same Ctrl-C and shuts down by itself
        return 130


def run_tiny_model(args: argparse.Namespace) -> int:
    """Build the tiny model with the interpreter that has torch and transformers."""
    from equinox.integrations.vllm.launcher import SRC_DIR

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH", "")) if p)
    argv = [_python(args), "-m", "equinox.integrations.vllm.tiny_model", args.out_dir, "--shape", args.shape]
    return subprocess.call(argv, env=env)
