"""``python -m src.simulate``: data with known truth from a family's generative simulator.

The shared-bias family's (the default; families/shared_bias/simulator.py) writes into
``--out`` the long ratings table (``ratings.csv`` or ``.parquet``), ``outcome.csv`` (one
teacher-level outcome per teacher) and ``truth.json`` (the configuration, every true
parameter and every quantity ``python -m src.fit`` reports, at its true value).
``--family gstudy`` simulates a G-study instead (families/gstudy/simulator.py; no outcome).
The options after ``--out`` and ``--format`` are the fields of the family's simulation
config, with its defaults.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from llm_measure.errors import OneLineArgumentParser, run_command
from llm_measure.families.registry import FAMILIES, family_named

if TYPE_CHECKING:
    from llm_measure.families.base import Simulator

PROG = "python -m src.simulate"
DEFAULT_FAMILY = "shared_bias"


def parse_args(argv: list[str] | None) -> tuple[Simulator, argparse.Namespace]:
    """(the chosen family's simulator, the parsed arguments). The options depend on the
    family, so ``--family`` is read first; an abbreviation of it (``--fam``), which only the
    full parser expands, takes a second pass."""
    first = OneLineArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    first.add_argument("--family", choices=sorted(FAMILIES), default=DEFAULT_FAMILY)
    family = first.parse_known_args(argv)[0].family
    expanded = _parser(family)[1].parse_known_args(argv)[0].family
    simulator, parser = _parser(expanded)
    return simulator, parser.parse_args(argv)


def _parser(family: str) -> tuple[Simulator, OneLineArgumentParser]:
    """(the family's simulator, a parser whose options are its config's fields)."""
    simulator = family_named(family).simulator()
    p = OneLineArgumentParser(prog=PROG, description=simulator.description)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    for name, value in asdict(simulator.config()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(
                flag, type=_true_or_false, default=value, help=f"true/false (default {value})"
            )
        else:
            p.add_argument(
                flag,
                type=float if value is None else type(value),
                default=value,
                help=f"default {value}",
            )
    p.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default=DEFAULT_FAMILY,
        help=f"the family whose simulator to run (default {DEFAULT_FAMILY})",
    )
    return simulator, p


def _true_or_false(text: str) -> bool:
    """A switch's value; anything but these words is a typo, not false."""
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.strip().lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, not '{text}'")
    return words[text.strip().lower()]


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from llm_measure.fitting.simulated import write_simulation

        simulator, args = parse_args(argv)
        fields = {k: getattr(args, k) for k in asdict(simulator.config())}
        truth = write_simulation(simulator.config(**fields), args.out, args.format)
        print(f"wrote {args.out}: {simulator.headline(truth)}")
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
