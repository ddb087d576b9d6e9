"""The ECS tasks' commands, taken from the synthesized templates and run here: the shell that
joins the database and Redis URLs from their secrets, then the real `streamr` program."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from infra_helpers import resources
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv/bin"
SECRETS = {
    "DB_USER": "streamr",
    "DB_PASSWORD": "Pw0rdFromSecretsManager",
    "REDIS_AUTH_TOKEN": "T0kenFromSecretsManager",
}


def container(synthesized, name: str) -> dict[str, Any]:
    template = synthesized.json("beta", "Application")
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        for definition in task["ContainerDefinitions"]:
            if definition["Name"] == name:
                return definition
    raise AssertionError(name)


def task_environment(definition: dict[str, Any], tmp_path: Path, **values: str) -> dict[str, str]:
    """What ECS would give the container: its plain variables (values CloudFormation resolves
    at deploy time stand in here), the secrets, and PATH with the project's programs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    for variable in definition.get("Environment", []):
        value = variable["Value"]
        env[variable["Name"]] = value if isinstance(value, str) else "resolved-at-deploy"
    names = {s["Name"] for s in definition.get("Secrets", [])}
    env |= {name: SECRETS.get(name, "secret-value") for name in names}
    env |= {"STREAMR_DATA_DIR": str(tmp_path / "data"), "PATH": f"{VENV_BIN}:{env['PATH']}"}
    return env | values


@pytest.mark.postgres
def test_migration_task_command_upgrades_a_real_database(synthesized, postgres_server, tmp_path):
    definition = container(synthesized, "migrate")
    database = make_url(postgres_server.create_database()).database
    env = task_environment(
        definition,
        tmp_path,
        DB_HOST="127.0.0.1",
        DB_PORT=str(postgres_server.port),
        DB_NAME=database,
    )
    result = subprocess.run(
        definition["Command"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "database is at revision head" in result.stdout
    current = subprocess.run(
        ["/bin/sh", "-c", definition["Command"][2].replace("db upgrade", "db current")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert current.returncode == 0 and "(head)" in current.stdout + current.stderr
    assert SECRETS["DB_PASSWORD"] not in result.stdout + result.stderr


def test_coordinator_task_command_builds_both_urls_without_exposing_them(synthesized, tmp_path):
    """`streamr` is replaced by a stand-in that records what it was started with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "started.json"
    stub = bin_dir / "streamr"
    stub.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, "
        f"open({str(record)!r}, 'w'))\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    definition = container(synthesized, "coordinator")
    env = task_environment(
        definition,
        tmp_path,
        DB_HOST="db.internal",
        DB_PORT="5432",
        REDIS_HOST="cache.internal",
        REDIS_PORT="6379",
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(definition["Command"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    started = json.loads(record.read_text())
    assert started["argv"] == ["coordinator", "--behind-proxy"]
    assert not any(secret in " ".join(started["argv"]) for secret in SECRETS.values())
    assert "DB_PASSWORD" not in started["env"] and "REDIS_AUTH_TOKEN" not in started["env"]

    database = make_url(started["env"]["STREAMR_DATABASE_URL"])
    assert (database.drivername, database.username, database.password) == (
        "postgresql",
        "streamr",
        SECRETS["DB_PASSWORD"],
    )
    assert (database.host, database.port, database.database) == ("db.internal", 5432, "streamr")

    client = redis.Redis.from_url(started["env"]["STREAMR_REDIS_URL"])
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection, "TLS to ElastiCache"
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == (
        "cache.internal",
        6379,
        SECRETS["REDIS_AUTH_TOKEN"],
    )
    client.close()
