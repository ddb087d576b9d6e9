"""The load balancer: nginx (Debian's package) in front of N coordinator replicas.

``render`` fills nginx-lb.conf for a listen address and the replicas' addresses;
``start_load_balancer`` runs it in a work directory. For a machine of your own::

    python -m streamr_coordinator.cluster.lb --listen 0.0.0.0:80 \\
        --upstream 10.0.0.11:8000 --upstream 10.0.0.12:8000 > /etc/nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import resource
from collections.abc import Sequence
from pathlib import Path

from .services import NginxServer

TEMPLATE = Path(__file__).with_name("nginx-lb.conf")


def _user_directive() -> str:
    # nginx started by root runs its workers as 'nobody', who cannot write a private work
    # directory; they run as the user who started it instead.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


def _open_files_limit(wanted: int) -> int:
    # Raising the limit above the hard limit fails (an alert in the log); stay under it.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def render(
    listen: str,
    upstreams: Sequence[str],
    worker_processes: int = 1,
    worker_connections: int = 8192,
    max_fails: int = 4,
    fail_timeout_s: int = 3,
    user: str | None = None,
) -> str:
    """nginx-lb.conf for ``listen`` (``host:port``) in front of ``upstreams`` (``host:port``
    each). ``user`` is the ``user`` directive (default: the current user when run as root)."""
    if not upstreams:
        raise ValueError("at least one upstream (a coordinator replica's host:port)")
    servers = "\n".join(
        f"        server {address} max_fails={max_fails} fail_timeout={fail_timeout_s}s;"
        for address in upstreams
    )
    values = {
        "user": _user_directive() if user is None else user,
        "worker_processes": str(worker_processes),
        "rlimit_nofile": str(_open_files_limit(4 * worker_connections)),
        "worker_connections": str(worker_connections),
        "servers": servers,
        "keepalive": "64",
        "listen": listen,
        # Every replica once, at least two tries (a replica restarting on the same address).
        "tries": str(max(2, len(upstreams))),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        raise ValueError("nginx-lb.conf has a placeholder that render() does not fill")
    return text


def start_load_balancer(workdir: Path, port: int, upstream_ports: Sequence[int]) -> NginxServer:
    """nginx on 127.0.0.1:``port`` in front of replicas on 127.0.0.1:``upstream_ports``,
    started; its work directory (configuration, log) is ``workdir``."""
    config = render(f"127.0.0.1:{port}", [f"127.0.0.1:{p}" for p in upstream_ports])
    server = NginxServer(workdir, config, port)
    server.start()
    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m streamr_coordinator.cluster.lb",
        description="Print the load balancer's nginx configuration.",
    )
    parser.add_argument("--listen", default="0.0.0.0:80", help="host:port nginx listens on")
    parser.add_argument(
        "--upstream", action="append", required=True, help="a replica's host:port (repeat)"
    )
    parser.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument(
        "--user", default="", help="nginx 'user' directive, e.g. 'user www-data;' (default none)"
    )
    args = parser.parse_args(argv)
    print(render(args.listen, args.upstream, worker_processes=args.workers, user=args.user))


if __name__ == "__main__":
    main()
