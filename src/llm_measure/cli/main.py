"""The ``llm-measure`` console command: ``llm-measure fit|infer|simulate|report [args]``,
the same commands as ``python -m src.fit`` (infer, simulate, report) in a source checkout."""

from __future__ import annotations

import importlib
import sys

COMMANDS = ("fit", "infer", "simulate", "report")
USAGE = (
    "usage: llm-measure {fit,infer,simulate,report} [arguments]  "
    "(llm-measure COMMAND --help for each)"
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"llm-measure: unknown command '{command}'; {USAGE}", file=sys.stderr)
        return 2
    # Ctrl-C / SIGTERM during PyMC's seconds of importing are recorded, as for python -m src.*
    from llm_measure.errors import defer_signals_while_importing

    defer_signals_while_importing()
    return importlib.import_module(f"llm_measure.cli.{command}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
