"""Print how many generated cases and injected faults each command went through (the
counts docs/reliability.md records); $RELIABILITY_COUNTS names a JSON file to write them to."""

import json
import os

from reliability_harness import COUNTS


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    terminalreporter.section("reliability: cases run per command")
    for command, outcomes in sorted(COUNTS.items()):
        total = sum(n for k, n in outcomes.items() if k.startswith(("accepted", "rejected")))
        terminalreporter.write_line(f"{command}: {total} checked outcomes")
        for outcome, n in sorted(outcomes.items()):
            terminalreporter.write_line(f"    {n:6d}  {outcome}")
    if os.environ.get("RELIABILITY_COUNTS"):
        with open(os.environ["RELIABILITY_COUNTS"], "w", encoding="utf-8") as f:
            json.dump(COUNTS, f, indent=1, sort_keys=True)
