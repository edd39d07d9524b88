"""`python -m tests.hostkit up|down`: start or stop the test services."""

import json
import sys
from dataclasses import asdict

from tests.hostkit import services


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    if command == "up":
        print(json.dumps(asdict(services.up()), indent=2))
    elif command == "down":
        services.down()
    else:
        print("usage: python -m tests.hostkit up|down", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
