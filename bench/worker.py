"""Runs one benchmark case in this (fresh) process and prints its result as one JSON line.

``python -m norn.bench.worker '{"target": "module:function", "params": {...}}'``; the parent
(``bench.harness.run_case``) reads the line that starts with ``RESULT_MARK``.
"""

from __future__ import annotations

import json
import sys

from norn.bench.harness import RESULT_MARK, call_target, strip_private


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    result = strip_private(call_target(spec["target"], spec.get("params", {})))
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
