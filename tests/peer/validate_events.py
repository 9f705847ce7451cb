#!/usr/bin/env python3
"""Validate Realtime server events (JSON, one per line) against the OpenAI SDK's GA types.

Usage: validate_events.py [FILE ...]   (reads stdin when no FILE is given)

Blank lines are skipped.  See realtime_schema.py for the rules applied to each
event.  Prints one line per failure, then `validated N events, M failures`;
exits 1 if there was any failure, else 0.
"""

import fileinput
import sys

from realtime_schema import validate_line


def main() -> int:
    total = failures = 0
    for line in fileinput.input(sys.argv[1:]):
        if not line.strip():
            continue
        total += 1
        etype, err = validate_line(line)
        if err:
            failures += 1
            print(f"{fileinput.filename()}:{fileinput.filelineno()}: type={etype}: {err}")
    print(f"validated {total} events, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
