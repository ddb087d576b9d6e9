"""Custom resource: run the database migrations once per deploy, as a one-off ECS task.

CloudFormation creates or updates this resource after the new task definitions and before the
services (they depend on it), so the schema is upgraded once, by one task, before any task of
the new version serves; the coordinators themselves never migrate (STREAMR_AUTO_MIGRATE=false).
``on_event`` starts the task; ``is_complete`` (polled by the CDK provider framework) waits for it
to stop and fails the deployment, which CloudFormation then rolls back, if it did not exit 0.

During a rollback CloudFormation sends an Update with the previous properties. Running the
previous release's ``streamr db upgrade`` against a newer schema would fail and wedge the
rollback, so it is skipped: migrations must stay compatible with the release before them
(docs/deployment.md, "Rollback").
"""

from __future__ import annotations

from typing import Any

ROLLING_BACK = {"UPDATE_ROLLBACK_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"}
PHYSICAL_ID = "database-migrations"


def _client(name: str, given: Any) -> Any:
    if given is not None:
        return given
    import boto3  # provided by the Lambda runtime

    return boto3.client(name)


def on_event(
    event: dict[str, Any], _context: Any, ecs: Any = None, cloudformation: Any = None
) -> dict[str, Any]:
    request = event["RequestType"]
    if request == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}
    if request == "Update":
        stack = _client("cloudformation", cloudformation).describe_stacks(
            StackName=event["StackId"]
        )["Stacks"][0]
        if stack["StackStatus"] in ROLLING_BACK:
            print("migrations: stack is rolling back; the newer schema stays")
            return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Skipped": "rollback"}}
    props = event["ResourceProperties"]
    started = _client("ecs", ecs).run_task(
        cluster=props["Cluster"],
        taskDefinition=props["TaskDefinition"],
        launchType="FARGATE",
        count=1,
        startedBy="cfn-migrations",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": props["Subnets"],
                "securityGroups": props["SecurityGroups"],
                "assignPublicIp": "DISABLED",
            }
        },
    )
    if started.get("failures") or not started.get("tasks"):
        reasons = "; ".join(f"{f.get('arn', '')}: {f.get('reason')}" for f in started["failures"])
        raise RuntimeError(f"the migration task could not start: {reasons or 'no task'}")
    task_arn = started["tasks"][0]["taskArn"]
    print(f"migrations: started {task_arn}")
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"TaskArn": task_arn}}


def is_complete(event: dict[str, Any], _context: Any, ecs: Any = None) -> dict[str, Any]:
    data = event.get("Data") or {}
    if event["RequestType"] == "Delete" or "TaskArn" not in data:
        return {"IsComplete": True}
    props = event["ResourceProperties"]
    described = _client("ecs", ecs).describe_tasks(
        cluster=props["Cluster"], tasks=[data["TaskArn"]]
    )
    if not described.get("tasks"):
        raise RuntimeError(f"the migration task {data['TaskArn']} has disappeared")
    task = described["tasks"][0]
    if task.get("lastStatus") != "STOPPED":
        return {"IsComplete": False}
    container = next(
        (c for c in task.get("containers", []) if c.get("name") == props["ContainerName"]), {}
    )
    exit_code = container.get("exitCode")
    if exit_code != 0:
        reason = container.get("reason") or task.get("stoppedReason") or "no reason given"
        raise RuntimeError(
            f"the migrations failed (exit status {exit_code}: {reason}); the deployment is "
            f"rolled back. Logs: scripts/operational-logs.sh --stage {props['Stage']} "
            "--service migrate"
        )
    print(f"migrations: {data['TaskArn']} finished")
    return {"IsComplete": True}
