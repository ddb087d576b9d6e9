"""The commands the ECS tasks run, and how they get their database and Redis URLs.

The coordinator takes one ``STREAMR_DATABASE_URL`` and one ``STREAMR_REDIS_URL``, but the
pieces come from different places: the database password from the RDS secret, the Redis auth
token from its own secret (ECS injects both as environment variables), host names from the
stacks. A few lines of ``sh`` join them just before the program starts; the values go through
``export``, never through a command line (where ``ps`` would show them), and the separate
password variables are removed before ``exec``. Both secrets are generated without punctuation
(see foundation.py), so they need no escaping inside a URL.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# Environment the task definitions provide (secrets through ECS, the rest as plain values).
DATABASE_VARIABLES = ("DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME")
REDIS_VARIABLES = ("REDIS_AUTH_TOKEN", "REDIS_HOST", "REDIS_PORT")

# Plain $NAME, not ${NAME}: CloudFormation's validators read ${...} as a parameter reference.
_DATABASE = (
    'export STREAMR_DATABASE_URL="postgresql://$DB_USER:$DB_PASSWORD@$DB_HOST:$DB_PORT/$DB_NAME"'
)
# rediss://: ElastiCache has encryption in transit on, and the token is the AUTH password.
_REDIS = 'export STREAMR_REDIS_URL="rediss://:$REDIS_AUTH_TOKEN@$REDIS_HOST:$REDIS_PORT/0"'


def shell_script(program: str, *, redis: bool) -> str:
    """``program`` (a shell fragment) with the URLs exported before it."""
    lines = ["set -eu", _DATABASE]
    if redis:
        lines.append(_REDIS)
    lines.append("unset DB_PASSWORD" + (" REDIS_AUTH_TOKEN" if redis else ""))
    lines.append(program)
    return "\n".join(lines)


def streamr(args: Sequence[str], *, redis: bool) -> list[str]:
    """The container command that runs ``streamr ARGS`` with both URLs in its environment."""
    return ["/bin/sh", "-c", shell_script(f"exec {shlex.join(['streamr', *args])}", redis=redis)]


def create_monitor_account() -> list[str]:
    """Creates the monitor admin from the monitor secret; the password goes in on stdin."""
    program = (
        'printf "%s\\n" "$MONITOR_PASSWORD" | '
        'streamr admin create --email "$MONITOR_EMAIL" --display-name monitor --password-stdin'
    )
    return ["/bin/sh", "-c", shell_script(program, redis=False)]


OPS_CONTAINER = "migrate"  # the ops task definition's container (application.py)


def ops_overrides(argv: Sequence[str] | None = None) -> dict:
    """ECS RunTask overrides for the ops task: `streamr ARGS`, or the monitor account."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streamr_infra.container_commands")
    parser.add_argument("--monitor-account", action="store_true")
    parser.add_argument("streamr_args", nargs="*", help="arguments of `streamr`")
    args = parser.parse_args(argv)
    command = (
        create_monitor_account()
        if args.monitor_account
        else streamr(args.streamr_args, redis=False)
    )
    return {"containerOverrides": [{"name": OPS_CONTAINER, "command": command}]}


if __name__ == "__main__":
    import json

    print(json.dumps(ops_overrides()))
