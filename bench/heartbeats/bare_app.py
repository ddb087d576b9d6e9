"""The framework's ceiling: a FastAPI app with one POST endpoint that does nothing.

It runs under the same FastAPI, uvicorn and logging set-up as ``streamr coordinator`` (see
``cmd_coordinator`` in coordinator/streamr_coordinator/cli.py), so the only difference measured
against a heartbeat is the coordinator's own work.

    .venv/bin/python bench/heartbeats/bare_app.py --port 8001 [--log-level WARNING]
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

from streamr_coordinator.logs import configure_logging

app = FastAPI()


@app.post("/bare")
async def bare(body: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    configure_logging(args.log_level)
    # The same options cmd_coordinator passes (without --behind-proxy).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        forwarded_allow_ips=None,
    )


if __name__ == "__main__":
    main()
