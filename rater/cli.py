"""`rater` entry point. gevent patches the standard library before anything else is imported:
psycopg and redis pick their waiting strategy at import time (DESIGN §12)."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

from rater.errors import RaterError  # noqa: E402

# Each module registers its subcommands; the order is the order of `rater --help`.
COMMAND_MODULES = (
    "rater.commands.run",
    "rater.commands.quote",
    "rater.commands.balance",
    "rater.commands.products",
    "rater.commands.product_prefixes",
    "rater.commands.export",
    "rater.commands.reconcile",
    "rater.commands.layout",
    "rater.commands.flush",
    "rater.commands.check_config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rater", description="Real-time rating daemon for FreeSWITCH."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RaterError as exc:
        print(f"rater: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
