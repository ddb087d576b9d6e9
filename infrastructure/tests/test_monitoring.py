"""The monitoring stack: the dashboard shows the signals that matter, alarms notify an
encrypted SNS topic on the stages that have them, the collector may write only its namespace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import logical_id, resources

STAGES = ("beta", "gamma", "prod")


def dashboard_body(synthesized, stage: str) -> str:
    template = synthesized.json(stage, "Monitoring")
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    return json.dumps(dashboard["DashboardBody"])


def alarms(synthesized, stage: str) -> dict[str, dict[str, Any]]:
    template = synthesized.json(stage, "Monitoring")
    return {a["AlarmName"]: a for a in resources(template, "AWS::CloudWatch::Alarm").values()}


@pytest.mark.parametrize("stage", STAGES)
def test_dashboard_shows_the_signals_that_matter(synthesized, stage):
    body = dashboard_body(synthesized, stage)
    for signal, evidence in {
        "ingest up": ["AWS/NetworkELB", "HealthyHostCount", "Ingest up"],
        "live streams": [f"StreamrP2P/{stage}", "LiveStreams"],
        "nodes present": ["NodesOnline", "NodesRegistered"],
        "share of bytes from friends": [
            "FriendBytesLastHour",
            "ProcessedBytes",
            "100 * friends / (friends + origin)",
        ],
        "API errors": ["HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"],
        "API latency": ["TargetResponseTime", "p99"],
        "database health": ["AWS/RDS", "CPUUtilization", "FreeStorageSpace", "DatabaseConnections"],
        "Redis health": [
            "AWS/ElastiCache",
            "EngineCPUUtilization",
            "DatabaseMemoryUsagePercentage",
        ],
        "tasks": ["ECS/ContainerInsights", "RunningTaskCount"],
    }.items():
        missing = [e for e in evidence if e not in body]
        assert not missing, f"{signal}: {missing} not on the dashboard"


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_notify_the_topic_where_the_stage_has_alarms(synthesized, stage):
    config = synthesized.stages[stage]
    found = alarms(synthesized, stage)
    monitoring = synthesized.built[stage].monitoring
    if not config.alarms:
        assert found == {}
        return
    assert {name.removeprefix(f"streamr-{stage}-") for name in found} == {
        "IngestDown",
        "OriginDown",
        "ApiUnreachable",
        "MetricsCollectorFailing",
        "ApiErrors",
        "ApiSlow",
        "CoordinatorsDown",
        "WorkerNotRunning",
        "DatabaseCpu",
        "DatabaseStorageLow",
        "RedisCpu",
        "RedisMemory",
    }
    topic = {"Ref": logical_id(monitoring.topic)}
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name
        assert alarm["AlarmDescription"], name
    template = synthesized.json(stage, "Monitoring")
    emails = {
        s["Endpoint"]
        for s in resources(template, "AWS::SNS::Subscription").values()
        if s["Protocol"] == "email"
    }
    assert emails == set(config.alarm_emails)


@pytest.mark.parametrize("stage", STAGES)
def test_alarm_topic_is_encrypted_and_usable_by_cloudwatch(synthesized, stage):
    template = synthesized.json(stage, "Monitoring")
    monitoring = synthesized.built[stage].monitoring
    (topic,) = resources(template, "AWS::SNS::Topic").values()
    key = logical_id(monitoring.topic.master_key)
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    key_props = template["Resources"][key]["Properties"]
    assert key_props["EnableKeyRotation"] is True
    statements = key_props["KeyPolicy"]["Statement"]
    assert any(
        s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        and "kms:GenerateDataKey*" in s["Action"]
        for s in statements
    )


@pytest.mark.parametrize("stage", STAGES)
def test_collector_runs_every_minute_and_writes_only_its_namespace(synthesized, stage):
    template = synthesized.json(stage, "Monitoring")
    (rule,) = resources(template, "AWS::Events::Rule").values()
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        for s in p["PolicyDocument"]["Statement"]
    ]
    (put,) = [s for s in statements if s["Action"] == "cloudwatch:PutMetricData"]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": f"StreamrP2P/{stage}"}}
    (function,) = [
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f.get("Handler") == "index.handler"
    ]
    env = function["Environment"]["Variables"]
    assert env["NAMESPACE"] == f"StreamrP2P/{stage}"
    assert set(env) == {"API_URL", "NAMESPACE", "MONITOR_SECRET_ARN"}
