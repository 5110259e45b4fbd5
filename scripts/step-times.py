#!/usr/bin/env python3
"""Print how long each step of a `molecule test` took, read from its log.

Ansible steps end with profile_tasks' running total ("... 0:14:12.739"); the verify step ends
with pytest's "N passed in 37.13s". Usage: scripts/step-times.py .cache/molecule/default.log
"""

import re
import sys

STEP = re.compile(r"\[\S+ > (\w+)\] Executing$")
ANSIBLE_TOTAL = re.compile(r"\)\s+(\d+):(\d+):(\d+\.\d+) \*+$")
PYTEST_TOTAL = re.compile(r" in (\d+\.\d+)s")


def step_times(lines: list[str]) -> list[tuple[str, float]]:
    times: list[tuple[str, float]] = []
    step, seconds = None, 0.0
    for line in lines:
        if match := STEP.search(line.rstrip()):
            if step:
                times.append((step, seconds))
            step, seconds = match.group(1), 0.0
        elif match := ANSIBLE_TOTAL.search(line.rstrip()):
            hours, minutes, secs = match.groups()
            seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
        elif step == "verify" and (match := PYTEST_TOTAL.search(line)):
            seconds = float(match.group(1))
    if step:
        times.append((step, seconds))
    return times


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as log:
        print(", ".join(f"{step} {seconds:.0f}s" for step, seconds in step_times(log.readlines())))
