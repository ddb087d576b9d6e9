"""scripts/deploy-*.sh and scripts/operational-*.sh, run for real against stand-ins for the
AWS CLI, the CDK CLI and Docker that record every call (there is no AWS account here).

What is checked: --help, refusing prod without --prod before anything is called, the calls each
script makes (stacks, images, tasks, services), confirmations, and that new secret values reach
AWS only through files, never on a command line.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.name
    for p in (ROOT / "scripts").glob("*.sh")
    if p.name.startswith(("deploy-", "operational-"))
)
# What each script needs besides --stage to do anything at all.
MINIMAL = {
    "operational-logs.sh": ["--service", "coordinator"],
    "operational-rotate-keys.sh": ["--key", "jwt", "--yes"],
}

REGISTRY = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
FAKE_AWS = r"""
import json, os, sys
REGISTRY = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
args = sys.argv[1:]
record = {"tool": "aws", "args": args}
for arg in args:
    if arg.startswith("file://"):
        record.setdefault("files", {})[arg] = open(arg[7:]).read()
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
outputs = {
    "ClusterName": "streamr-stage", "OpsTaskDefinitionArn": "arn:aws:ecs:taskdef/ops:3",
    "PrivateSubnets": "subnet-a,subnet-b", "OpsSecurityGroup": "sg-ops",
    "CoordinatorRepositoryUri": REGISTRY + "/streamr-x/coordinator",
    "IngestRepositoryUri": REGISTRY + "/streamr-x/ingest",
    "PublicUrl": "https://api.streamr.test", "RtmpUrl": "rtmp://rtmp.streamr.test:1935/live",
    "DatabaseInstanceId": "db-1", "RedisReplicationGroupId": "redis-1",
}
if args[:2] == ["cloudformation", "describe-stacks"]:
    query = args[args.index("--query") + 1]
    key = query.split("'")[1]
    print(outputs.get(key) or f"arn:aws:secretsmanager:secret:{key}")
elif args[:2] == ["ecs", "run-task"]:
    print("arn:aws:ecs:task/streamr-stage/1")
elif args[:2] == ["ecs", "describe-tasks"]:
    print(os.environ.get("FAKE_EXIT", "0"))
elif args[:2] == ["ecr", "describe-images"]:
    sys.exit(254 if os.environ.get("FAKE_MISSING_IMAGES") else 0)
elif args[:2] == ["ecr", "get-login-password"]:
    print("ecr-password")
elif args[:2] == ["secretsmanager", "get-secret-value"]:
    print(json.dumps({"username": "streamr", "password": "old", "host": "db.internal"}))
"""

FAKE_TOOL = r"""
import json, os, sys
record = {"tool": os.path.basename(sys.argv[0]), "args": sys.argv[1:], "cwd": os.getcwd()}
if "--password-stdin" in sys.argv:
    record["stdin"] = sys.stdin.read()
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
"""


def fake(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STREAMR_"))}
    env |= {
        "FAKE_LOG": str(log),
        "STREAMR_AWS": str(fake(bin_dir / "aws", FAKE_AWS)),
        "STREAMR_CDK": str(fake(bin_dir / "cdk", FAKE_TOOL)),
        "STREAMR_DOCKER": str(fake(bin_dir / "docker", FAKE_TOOL)),
    }

    def run(script: str, *args: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, list]:
        log.write_text("")
        result = subprocess.run(
            [str(ROOT / "scripts" / script), *args],
            env=env | extra_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return result, calls

    return run


def own_config(tmp_path: Path) -> str:
    """The committed stages with the operator's own values in place of the stand-ins."""
    text = (ROOT / "infrastructure/config/stages.toml").read_text()
    for old, new in (
        ("123456789012", "210987654321"),
        ('"streamr.example.com"', '"live.streamr.test"'),
        ('hosted_zone_name = "example.com"', 'hosted_zone_name = "streamr.test"'),
        ("Z0EXAMPLE00000000000", "Z0123456789ABCDEFGHIJ"),
        ("@example.com", "@streamr.test"),
    ):
        text = text.replace(old, new)
    path = tmp_path / "stages.toml"
    path.write_text(text)
    return str(path)


def calls_of(calls: list[dict[str, Any]], tool: str, *prefix: str) -> list[dict[str, Any]]:
    return [c for c in calls if c["tool"] == tool and c["args"][: len(prefix)] == list(prefix)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_explains_itself(run, script):
    result, calls = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: scripts/{script} --stage beta|gamma|prod [--prod]")
    assert calls == []
    result, _ = run(script, "--stage", "beta", "--no-such-option", *MINIMAL.get(script, []))
    assert result.returncode == 2 and "--help" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_refuses_prod_without_the_flag(run, script):
    result, calls = run(script, "--stage", "prod", *MINIMAL.get(script, []))
    assert result.returncode == 1
    assert "refusing to run against prod without --prod" in result.stderr
    assert calls == [], "nothing was called before refusing"
    result, calls = run(script, "--stage", "beta", "--prod", *MINIMAL.get(script, []))
    assert result.returncode == 2 and calls == []


def test_deploy_synth_runs_cdk_for_one_stage(run):
    result, calls = run("deploy-synth.sh", "--stage", "gamma", "--image-tag", "abc123")
    assert result.returncode == 0, result.stderr
    (cdk,) = calls_of(calls, "cdk")
    assert cdk["args"] == ["synth", "--quiet", "-c", "stage=gamma", "-c", "image_tag=abc123"]
    assert cdk["cwd"] == str(ROOT / "infrastructure")


def test_deploy_stage_checks_images_shows_the_diff_and_deploys(run):
    result, calls = run("deploy-stage.sh", "--stage", "beta", "--image-tag", "t1", "--yes")
    assert result.returncode == 0, result.stderr
    images = calls_of(calls, "aws", "ecr", "describe-images")
    assert {c["args"][c["args"].index("--repository-name") + 1] for c in images} == {
        "streamr-beta/coordinator",
        "streamr-beta/ingest",
    }
    assert all("imageTag=t1" in c["args"] for c in images)
    diff, deploy = calls_of(calls, "cdk")
    assert diff["args"] == ["diff", "-c", "stage=beta", "-c", "image_tag=t1", "beta/*"]
    assert deploy["args"] == [
        "deploy",
        "-c",
        "stage=beta",
        "-c",
        "image_tag=t1",
        "--require-approval",
        "never",
        "beta/*",
    ]
    assert "https://api.streamr.test" in result.stderr


def test_deploy_stage_asks_and_does_nothing_unconfirmed(run):
    result, calls = run("deploy-stage.sh", "--stage", "beta", "--image-tag", "t1")
    assert result.returncode == 1 and "needs a confirmation" in result.stderr
    assert [c["args"][0] for c in calls_of(calls, "cdk")] == ["diff"], "no deploy"


def test_deploy_stage_refuses_images_that_were_never_pushed(run):
    result, calls = run("deploy-stage.sh", "--stage", "beta", "--yes", FAKE_MISSING_IMAGES="1")
    assert result.returncode == 1
    assert "push it with scripts/deploy-images.sh --stage beta" in result.stderr
    assert calls_of(calls, "cdk") == []


def test_deploy_stage_refuses_prod_with_stand_in_configuration(run):
    result, calls = run("deploy-stage.sh", "--stage", "prod", "--prod", "--yes")
    assert result.returncode != 0
    assert "stand-in values" in result.stderr and "account = 123456789012" in result.stderr
    assert calls == []


def test_deploy_stage_prod_with_the_operators_configuration(run, tmp_path):
    config = own_config(tmp_path)
    result, calls = run(
        "deploy-stage.sh",
        "--stage",
        "prod",
        "--prod",
        "--yes",
        "--image-tag",
        "rel-7",
        STREAMR_INFRA_CONFIG=config,
    )
    assert result.returncode == 0, result.stderr
    deploy = calls_of(calls, "cdk", "deploy")[0]
    assert deploy["args"][-1] == "prod/*" and "image_tag=rel-7" in deploy["args"]
    result, calls = run(
        "deploy-stage.sh",
        "--stage",
        "gamma",
        "--foundation-only",
        "--yes",
        STREAMR_INFRA_CONFIG=config,
    )
    assert result.returncode == 0, result.stderr
    assert calls_of(calls, "aws", "ecr") == [], "no images are needed for the foundation"
    assert calls_of(calls, "cdk", "deploy")[0]["args"][-1] == "gamma/Foundation"


def test_deploy_images_builds_and_pushes_both_images_tagged_with_the_commit(run):
    result, calls = run("deploy-images.sh", "--stage", "beta", "--allow-dirty", "--tag", "c0ffee")
    assert result.returncode == 0, result.stderr
    builds = calls_of(calls, "docker", "build")
    assert [b["args"][b["args"].index("--file") + 1] for b in builds] == [
        str(ROOT / "coordinator/Dockerfile"),
        str(ROOT / "ingest-server/Dockerfile"),
    ]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert all(f"GIT_COMMIT={commit}" in b["args"] for b in builds)
    (login,) = calls_of(calls, "docker", "login")
    assert login["stdin"].strip() == "ecr-password" and "ecr-password" not in login["args"]
    pushes = [c["args"][1] for c in calls_of(calls, "docker", "push")]
    assert pushes == [
        f"{REGISTRY}/streamr-x/coordinator:c0ffee",
        f"{REGISTRY}/streamr-x/ingest:c0ffee",
    ]


def ops_command(calls: list[dict[str, Any]]) -> str:
    (task,) = calls_of(calls, "aws", "ecs", "run-task")
    (overrides,) = task["files"].values()
    (container,) = json.loads(overrides)["containerOverrides"]
    assert container["name"] == "migrate"
    assert task["args"][task["args"].index("--task-definition") + 1] == "arn:aws:ecs:taskdef/ops:3"
    network = task["args"][task["args"].index("--network-configuration") + 1]
    assert "subnets=[subnet-a,subnet-b]" in network and "assignPublicIp=DISABLED" in network
    return container["command"][2]


def test_operational_migrate_runs_one_task_and_reports_its_status(run):
    result, calls = run("operational-migrate.sh", "--stage", "beta", "--history")
    assert result.returncode == 0, result.stderr
    assert ops_command(calls).splitlines()[-1] == "exec streamr db history"
    assert calls_of(calls, "aws", "ecs", "wait", "tasks-stopped")
    result, calls = run("operational-migrate.sh", "--stage", "beta", "--upgrade", FAKE_EXIT="1")
    assert result.returncode == 1 and "streamr db upgrade failed on beta" in result.stderr
    result, calls = run("operational-migrate.sh", "--stage", "beta", "--downgrade", "base")
    assert result.returncode == 1 and calls == [], "a downgrade is confirmed first"


def test_operational_monitor_account_creates_the_admin_from_the_secret(run):
    result, calls = run("operational-monitor-account.sh", "--stage", "gamma")
    assert result.returncode == 0, result.stderr
    command = ops_command(calls)
    assert "streamr admin create" in command and "--password-stdin" in command
    assert '"$MONITOR_PASSWORD"' in command


def test_operational_logs_tails_the_services_log_group(run):
    result, calls = run(
        "operational-logs.sh",
        "--stage",
        "gamma",
        "--service",
        "worker",
        "--since",
        "2h",
        "--follow",
    )
    assert result.returncode == 0, result.stderr
    (tail,) = calls_of(calls, "aws", "logs", "tail")
    assert tail["args"][2] == "/streamr/gamma/worker"
    assert "--follow" in tail["args"] and tail["args"][tail["args"].index("--since") + 1] == "2h"


def secret_puts(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for call in calls_of(calls, "aws", "secretsmanager", "put-secret-value"):
        secret_id = call["args"][call["args"].index("--secret-id") + 1]
        (value,) = call["files"].values()
        assert value not in " ".join(call["args"]), "the value travels as a file"
        found.append((secret_id, value))
    return found


def restarted(calls: list[dict[str, Any]]) -> list[str]:
    return [
        c["args"][c["args"].index("--service") + 1]
        for c in calls_of(calls, "aws", "ecs", "update-service")
    ]


def test_rotate_jwt_key_puts_a_fresh_ed25519_key_and_restarts_the_coordinators(run):
    result, calls = run("operational-rotate-keys.sh", "--stage", "beta", "--key", "jwt", "--yes")
    assert result.returncode == 0, result.stderr
    ((secret_id, value),) = secret_puts(calls)
    assert secret_id == "arn:aws:secretsmanager:secret:JwtKeySecretArn"
    assert isinstance(serialization.load_pem_private_key(value.encode(), None), Ed25519PrivateKey)
    assert value not in result.stdout + result.stderr
    assert restarted(calls) == ["coordinator"]
    assert calls_of(calls, "aws", "ecs", "wait", "services-stable")


def test_rotate_ingest_secret_restarts_both_sides(run):
    result, calls = run(
        "operational-rotate-keys.sh", "--stage", "beta", "--key", "ingest-secret", "--yes"
    )
    assert result.returncode == 0, result.stderr
    ((_, value),) = secret_puts(calls)
    from streamr_protocol.ingest import SECRET_PATTERN

    assert SECRET_PATTERN.match(value)
    assert restarted(calls) == ["coordinator", "ingest"]


def test_rotate_database_password_changes_instance_and_secret_together(run):
    result, calls = run(
        "operational-rotate-keys.sh", "--stage", "beta", "--key", "database", "--yes"
    )
    assert result.returncode == 0, result.stderr
    (modify,) = calls_of(calls, "aws", "rds", "modify-db-instance")
    (password,) = modify["files"].values()
    ((_, secret),) = secret_puts(calls)
    assert json.loads(secret) == {
        "username": "streamr",
        "password": password,
        "host": "db.internal",
    }
    assert password.isalnum() and len(password) == 32
    order = [c["args"][:2] for c in calls if c["tool"] == "aws"]
    assert order.index(["rds", "modify-db-instance"]) < order.index(
        ["secretsmanager", "put-secret-value"]
    )
    assert restarted(calls) == ["coordinator", "worker"]


def test_rotate_redis_token_in_two_steps(run):
    result, calls = run("operational-rotate-keys.sh", "--stage", "beta", "--key", "redis", "--yes")
    assert result.returncode == 0, result.stderr
    modifies = calls_of(calls, "aws", "elasticache", "modify-replication-group")
    strategies = [m["args"][m["args"].index("--auth-token-update-strategy") + 1] for m in modifies]
    assert strategies == ["ROTATE", "SET"]
    tokens = {next(iter(m["files"].values())) for m in modifies}
    ((_, stored),) = secret_puts(calls)
    assert tokens == {stored}
    assert restarted(calls) == ["coordinator", "worker"]


def test_rotation_asks_first(run):
    result, calls = run("operational-rotate-keys.sh", "--stage", "beta", "--key", "attestation")
    assert result.returncode == 1 and "needs a confirmation" in result.stderr
    assert secret_puts(calls) == []
