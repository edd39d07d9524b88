"""`python -m bench` (`make bench`): every benchmark in turn, each in a process of its own.

They print figures and never fail on them; this exits non-zero only if a benchmark could not run.
Run as root, after `make setup` (they start their own sshd servers). Extra arguments are not
passed on: run a module by itself for its options (`python -m bench.fleet --help`).
"""

from __future__ import annotations

import subprocess
import sys
import time

MODULES = ("bench.slack_ack", "bench.step_overhead", "bench.fleet", "bench.memory")


def main() -> int:
    failed = []
    for module in MODULES:
        print(f"\n=== python -m {module} " + "=" * (70 - len(module)), flush=True)
        start = time.monotonic()
        if subprocess.run([sys.executable, "-m", module], check=False).returncode != 0:
            failed.append(module)
        print(f"({time.monotonic() - start:.0f} s)", flush=True)
    if failed:
        print(f"\ncould not run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
