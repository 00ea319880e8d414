"""One writer process of the concurrent-writers benchmark.

    python -m tests.benchmarks.writer ours|baseline WORKER COUNT [STATE_FILE]

Prints "ready" once set up, waits for a line on standard input (so that all
writers start together), adds COUNT incoming messages, and prints one JSON
line: seconds taken and the errors it met by kind.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter


def message(worker: int, k: int) -> dict:
    return {
        "id": f"writer{worker}_{k}",
        "from": f"923{worker:02d}{k:07d}@c.us",
        "fromName": f"Writer {worker}",
        "body": f"message {k} from writer {worker}",
        "isGroup": False,
    }


def main(argv: list[str]) -> int:
    kind, worker, total = argv[0], int(argv[1]), int(argv[2])
    if kind == "ours":
        from statecore.state_manager import MessageStatus, StateManager

        manager = StateManager(actor=f"writer-{worker}")
        add = lambda data: manager.add_message(data, MessageStatus.INCOMING)  # noqa: E731
    else:
        from tests.benchmarks.baseline import JsonFileStateManager

        old = JsonFileStateManager(argv[3])
        add = lambda data: old.add_message(data, "incoming")  # noqa: E731
    print("ready", flush=True)
    sys.stdin.readline()
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    for k in range(total):
        try:
            add(message(worker, k))
        except Exception as exc:  # every failure is what we count
            errors[type(exc).__name__] += 1
    print(json.dumps({"seconds": time.perf_counter() - start, "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
