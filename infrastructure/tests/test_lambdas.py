"""The Lambda handlers the stacks deploy, run here with stand-ins for the AWS clients (the
metrics collector also runs against a real coordinator: tests/test_deployment_against_demo.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from infra_helpers import load_lambda

signing_keys = load_lambda("signing_keys")
migrations = load_lambda("migrations")
metrics = load_lambda("metrics")


class FakeSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.puts: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        return {"SecretString": self.values[SecretId]}

    def put_secret_value(self, SecretId: str, SecretString: str) -> None:
        self.values[SecretId] = SecretString
        self.puts.append(SecretId)


def test_generated_signing_key_is_a_pem_ed25519_private_key():
    pems = {signing_keys.ed25519_private_key_pem() for _ in range(3)}
    assert len(pems) == 3, "a fresh key every time"
    for pem in pems:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, Ed25519PrivateKey)


def test_signing_keys_fills_new_secrets_and_never_replaces_a_key():
    existing = signing_keys.ed25519_private_key_pem()
    client = FakeSecrets({"jwt": "a-random-placeholder", "attestation": existing})
    event = {"RequestType": "Create", "ResourceProperties": {"SecretArns": ["jwt", "attestation"]}}
    answer = signing_keys.handler(event, None, client=client)
    assert client.puts == ["jwt"]
    assert client.values["attestation"] == existing
    assert client.values["jwt"].startswith("-----BEGIN PRIVATE KEY-----")
    assert answer["Data"] == {"Initialized": "1"}
    assert "PRIVATE KEY" not in repr(answer), "no key in the response CloudFormation keeps"
    again = signing_keys.handler(event | {"RequestType": "Update"}, None, client=client)
    assert client.puts == ["jwt"] and again["Data"] == {"Initialized": "0"}


class FakeEcs:
    def __init__(self, tasks: list[dict[str, Any]] | None = None, failures=None) -> None:
        self.started: list[dict[str, Any]] = []
        self.tasks = tasks or []
        self.failures = failures or []

    def run_task(self, **kw: Any) -> dict[str, Any]:
        self.started.append(kw)
        if self.failures:
            return {"tasks": [], "failures": self.failures}
        return {"tasks": [{"taskArn": "arn:task/1"}], "failures": []}

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return {"tasks": self.tasks}


class FakeCloudFormation:
    def __init__(self, status: str) -> None:
        self.status = status

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        return {"Stacks": [{"StackStatus": self.status}]}


PROPS = {
    "Cluster": "arn:cluster",
    "TaskDefinition": "arn:taskdef:7",
    "ContainerName": "migrate",
    "Subnets": ["subnet-1"],
    "SecurityGroups": ["sg-1"],
    "Stage": "beta",
}


def test_migrations_start_one_private_task_per_deploy():
    ecs = FakeEcs()
    event = {
        "RequestType": "Update",
        "StackId": "stack",
        "ResourceProperties": PROPS,
        "PhysicalResourceId": "database-migrations",
    }
    answer = migrations.on_event(
        event, None, ecs=ecs, cloudformation=FakeCloudFormation("UPDATE_IN_PROGRESS")
    )
    (started,) = ecs.started
    assert started["taskDefinition"] == "arn:taskdef:7" and started["count"] == 1
    network = started["networkConfiguration"]["awsvpcConfiguration"]
    assert network == {
        "subnets": ["subnet-1"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED",
    }
    assert answer == {
        "PhysicalResourceId": "database-migrations",
        "Data": {"TaskArn": "arn:task/1"},
    }


def test_migrations_are_skipped_while_the_stack_rolls_back():
    ecs = FakeEcs()
    event = {"RequestType": "Update", "StackId": "stack", "ResourceProperties": PROPS}
    answer = migrations.on_event(
        event, None, ecs=ecs, cloudformation=FakeCloudFormation("UPDATE_ROLLBACK_IN_PROGRESS")
    )
    assert ecs.started == []
    assert migrations.is_complete(event | answer, None, ecs=ecs) == {"IsComplete": True}


def test_migrations_wait_for_the_task_and_fail_the_deploy_on_a_bad_exit():
    event = {
        "RequestType": "Create",
        "ResourceProperties": PROPS,
        "Data": {"TaskArn": "arn:task/1"},
    }
    running = FakeEcs([{"lastStatus": "RUNNING", "containers": []}])
    assert migrations.is_complete(event, None, ecs=running) == {"IsComplete": False}
    done = FakeEcs([{"lastStatus": "STOPPED", "containers": [{"name": "migrate", "exitCode": 0}]}])
    assert migrations.is_complete(event, None, ecs=done) == {"IsComplete": True}
    failed = FakeEcs(
        [
            {
                "lastStatus": "STOPPED",
                "stoppedReason": "Essential container exited",
                "containers": [{"name": "migrate", "exitCode": 1}],
            }
        ]
    )
    with pytest.raises(RuntimeError, match=r"exit status 1.*operational-logs.sh --stage beta"):
        migrations.is_complete(event, None, ecs=failed)


def test_migrations_report_a_task_that_cannot_start():
    ecs = FakeEcs(failures=[{"arn": "arn:x", "reason": "RESOURCE:MEMORY"}])
    event = {"RequestType": "Create", "ResourceProperties": PROPS}
    with pytest.raises(RuntimeError, match="RESOURCE:MEMORY"):
        migrations.on_event(event, None, ecs=ecs)


def test_metrics_collector_reads_the_public_api_and_paginates():
    streams = [{"name": f"s{i}"} for i in range(250)]
    calls: list[tuple[str, str]] = []

    def fetch(method: str, url: str, body: Any, headers: dict[str, str]):
        calls.append((method, url))
        if url.endswith("/health"):
            return 200, {"status": "ok"}
        if "/api/v1/streams?" in url:
            offset = int(url.split("offset=")[1])
            return 200, {"streams": streams[offset : offset + 200], "total": 250}
        if url.endswith("/nodes"):
            return 200, {"registered": 2, "online": 1, "nodes": None}
        raise AssertionError(url)

    found = metrics.collect("https://api.example.test/", fetch)
    assert found == {
        "ApiHealthy": 1.0,
        "LiveStreams": 250.0,
        "NodesRegistered": 500.0,
        "NodesOnline": 250.0,
    }
    assert sum("/api/v1/streams?" in url for _, url in calls) == 2


def test_metrics_collector_reports_an_unreachable_api_and_nothing_else():
    assert metrics.collect("https://down.example.test", lambda *a: (0, None)) == {"ApiHealthy": 0.0}
