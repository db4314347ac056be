"""The `equinox` command: a thin layer that parses, calls the library and reports errors in one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from equinox.errors import EquinoxError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `equinox: error: <subcommand>: <message>` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("equinox").strip()
        print(f"equinox: error: {where + ': ' if where else ''}{message} (see `{self.prog} --help`)",
              file=sys.stderr)
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full argument parser with every subcommand (`command`: only what that one needs, when it is known).

    Registering the other commands imports their modules (experiments, reports, the gateway),
    which a `simulate` run does not use: a tenth of a second of its start-up.
    """
    from equinox import __version__
    from equinox.cli import simulate
    from equinox.compiled import is_compiled

    parser = _Parser(
        prog="equinox", description="Holistic fair scheduling for multi-tenant LLM serving."
    )
    core = "compiled" if is_compiled() else "pure Python"  # the optional mypyc build (README, "compiled simulator")
    parser.add_argument("--version", action="version", version=f"equinox {__version__} (simulator core: {core})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    simulate.add_parsers(sub)
    if command is not None and command in sub.choices:
        return parser
    for module, hook in (
        ("equinox.cli.trace", "add_trace_parser"),
        ("equinox.cli.vllm", "add_vllm_parser"),
        ("equinox.cli.report", "add_report_parser"),
        ("equinox.cli.gateway", "add_gateway_parser"),
        ("equinox.cli.serve", "add_serve_parser"),
    ):
        try:
            mod = __import__(module, fromlist=[hook])
        except ImportError:
            continue
        getattr(mod, hook)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    # The first word that is not an option names the command: the only global options are flags.
    parser = build_parser(next((a for a in args_list if not a.startswith("-")), None))
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error already printed in one line
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EquinoxError as exc:
        print(f"equinox: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("equinox: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # e.g. an output path that is a file, or a directory we may not write
        print(f"equinox: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
