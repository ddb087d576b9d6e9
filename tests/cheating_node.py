"""A real friend node with one dishonest change, for the end-to-end fraud tests.

``python -m tests.cheating_node STRATEGY run ...`` is ``streamr-node run ...`` with the node's
own code patched in one place, so everything else (joining, heartbeats, the relay tree, reports,
leaving) is exactly what an honest node does:

- ``inflate``: every delivery is reported ``INFLATION`` times over;
- ``altered``: every segment body it serves has one byte flipped (the pull side still verifies,
  so it holds the right bytes and chooses to serve others);
- ``nothing``: answers every segment request with 404 but reports as if it had served it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from streamr_node import accounting, cli, server

INFLATION = 4


def _inflate() -> None:
    honest = accounting.UsageLedger.served

    def served(self, session_id, nbytes, *, full_segment):  # type: ignore[no-untyped-def]
        for _ in range(INFLATION):
            honest(self, session_id, nbytes, full_segment=full_segment)

    accounting.UsageLedger.served = served  # type: ignore[method-assign]


def _altered() -> None:
    honest = server.NodeApp._segment

    def segment(self, request, name):  # type: ignore[no-untyped-def]
        response = honest(self, request, name)
        if response.body:
            body = bytearray(response.body)
            body[len(body) // 2] ^= 0xFF
            response.body = bytes(body)
        return response

    server.NodeApp._segment = segment  # type: ignore[method-assign]


def _nothing() -> None:
    honest = server.NodeApp._segment

    def segment(self, request, name):  # type: ignore[no-untyped-def]
        response = honest(self, request, name)
        if response.on_delivered is not None:
            response.on_delivered()  # claims the bytes ...
        raise server.HttpError(404, f"{name} is not in this node's window")  # ... serves none

    server.NodeApp._segment = segment  # type: ignore[method-assign]


STRATEGIES: dict[str, Callable[[], None]] = {
    "inflate": _inflate,
    "altered": _altered,
    "nothing": _nothing,
}


if __name__ == "__main__":
    strategy, *argv = sys.argv[1:]
    STRATEGIES[strategy]()
    cli.main(argv)
