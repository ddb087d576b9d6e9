"""The node client installs and imports on its own: no web framework, no ORM."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

HEAVY = ("fastapi", "starlette", "sqlalchemy", "alembic", "asyncpg", "uvicorn", "redis")


def test_declared_dependencies_are_light():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"streamr-protocol", "httpx"}


def test_importing_the_node_loads_nothing_heavy():
    code = (
        "import sys, streamr_node.cli, streamr_node.node, streamr_node.upnp; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
