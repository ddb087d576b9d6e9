"""The application stack: services and their commands, secrets, load balancers, HTTPS,
autoscaling, migrations once per deploy, and what differs by stage."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra_helpers import IMAGE_TAG, logical_id, resources

STAGES = ("beta", "gamma", "prod")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY", re.IGNORECASE)


def containers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container name -> its definition, over every task definition."""
    found = {}
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        for container in task["ContainerDefinitions"]:
            found[container["Name"]] = container | {"_task": task}
    return found


def environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def secret_source(synthesized, stage: str, value_from: Any) -> str:
    """The CloudFormation type of the foundation resource an ECS secret's ValueFrom names."""
    foundation = synthesized.json(stage, "Foundation")
    exports = {
        o["Export"]["Name"]: o["Value"] for o in foundation["Outputs"].values() if "Export" in o
    }
    text = json.dumps(value_from)
    (export,) = re.findall(r'"Fn::ImportValue": "([^"]+)"', text)
    return foundation["Resources"][exports[export]["Ref"]]["Type"]


def services(synthesized, stage: str) -> dict[str, dict[str, Any]]:
    template = synthesized.json(stage, "Application")
    return {s["ServiceName"]: s for s in resources(template, "AWS::ECS::Service").values()}


@pytest.mark.parametrize("stage", STAGES)
def test_services_run_the_real_commands(synthesized, stage):
    found = containers(synthesized.json(stage, "Application"))
    assert set(found) == {"coordinator", "worker", "ingest", "migrate"}
    commands = {name: c["Command"] for name, c in found.items()}
    # coordinator, worker and migrations: a shell builds the database and Redis URLs, then
    # execs the program (container_commands.py; run for real in test_container_commands.py).
    for name, program in (
        ("coordinator", "exec streamr coordinator --behind-proxy"),
        ("worker", "exec streamr worker"),
        ("migrate", "exec streamr db upgrade"),
    ):
        assert commands[name][:2] == ["/bin/sh", "-c"]
        assert commands[name][2].splitlines()[-1] == program
    assert commands["ingest"] == ["streamr-ingest"]
    env = {name: environment(c) for name, c in found.items()}
    assert env["coordinator"]["STREAMR_RUN_BACKGROUND_JOBS"] == "false"
    assert env["worker"]["STREAMR_RUN_BACKGROUND_JOBS"] == "true"
    assert env["coordinator"]["STREAMR_AUTO_MIGRATE"] == "false", "tasks never migrate"
    assert env["ingest"]["STREAMR_INGEST_WORK_DIR"] == "/var/lib/streamr/ingest"
    for container in found.values():
        image = json.dumps(container["Image"])
        assert image.endswith(f':{IMAGE_TAG}"]]}}'), image


@pytest.mark.parametrize("stage", STAGES)
def test_tasks_run_as_non_root_on_a_read_only_root_file_system(synthesized, stage):
    for name, container in containers(synthesized.json(stage, "Application")).items():
        assert container["User"] == "10001:10001", name
        assert container["ReadonlyRootFilesystem"] is True, name
        assert not container.get("Privileged", False), name
        assert "LogConfiguration" in container, name


@pytest.mark.parametrize("stage", STAGES)
def test_secrets_come_from_secrets_manager_never_plain_environment(synthesized, stage):
    found = containers(synthesized.json(stage, "Application"))
    for name, container in found.items():
        plain = [key for key in environment(container) if SECRET_WORDS.search(key)]
        assert plain == [], f"{name} has secrets in plain environment: {plain}"
        for secret in container.get("Secrets", []):
            assert secret_source(synthesized, stage, secret["ValueFrom"]) in (
                "AWS::SecretsManager::Secret",
                "AWS::SecretsManager::SecretTargetAttachment",  # the RDS secret, host attached
            ), secret
    secret_names = {name: {s["Name"] for s in c.get("Secrets", [])} for name, c in found.items()}
    assert secret_names["coordinator"] == {
        "DB_USER",
        "DB_PASSWORD",
        "REDIS_AUTH_TOKEN",
        "STREAMR_JWT_PRIVATE_KEY",
        "STREAMR_ATTESTATION_PRIVATE_KEY",
        "STREAMR_INGEST_SECRET",
    }
    assert secret_names["worker"] == {"DB_USER", "DB_PASSWORD", "REDIS_AUTH_TOKEN"}
    assert secret_names["ingest"] == {"STREAMR_INGEST_SECRET"}
    assert secret_names["migrate"] == {
        "DB_USER",
        "DB_PASSWORD",
        "MONITOR_EMAIL",
        "MONITOR_PASSWORD",
    }


@pytest.mark.parametrize("stage", STAGES)
def test_services_counts_and_safe_deployments(synthesized, stage):
    config = synthesized.stages[stage]
    found = services(synthesized, stage)
    assert set(found) == {"coordinator", "worker", "ingest"}
    assert found["coordinator"]["DesiredCount"] == config.coordinator_min_tasks
    assert found["worker"]["DesiredCount"] == config.worker_tasks
    assert found["ingest"]["DesiredCount"] == 1
    # Never two ingests on one work directory: the old task stops before the new one starts.
    ingest_deploy = found["ingest"]["DeploymentConfiguration"]
    assert (ingest_deploy["MinimumHealthyPercent"], ingest_deploy["MaximumPercent"]) == (0, 100)
    for name, service in found.items():
        network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED", name
        breaker = service["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
        assert breaker == {"Enable": True, "Rollback": True}, name


@pytest.mark.parametrize("stage", STAGES)
def test_coordinator_scales_on_cpu_and_requests(synthesized, stage):
    config = synthesized.stages[stage]
    template = synthesized.template(stage, "Application")
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": config.coordinator_min_tasks,
            "MaxCapacity": config.coordinator_max_tasks,
            "ScalableDimension": "ecs:service:DesiredCount",
        },
    )
    policies = resources(
        synthesized.json(stage, "Application"), "AWS::ApplicationAutoScaling::ScalingPolicy"
    )
    metrics = {
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]: p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        for p in policies.values()
    }
    assert metrics == {
        "ECSServiceAverageCPUUtilization": 60,
        "ALBRequestCountPerTarget": config.coordinator_requests_per_task,
    }


def listeners(template: dict[str, Any], load_balancer: str) -> dict[int, dict[str, Any]]:
    """Port -> listener of one load balancer (by logical id)."""
    return {
        listener["Port"]: listener
        for listener in resources(template, "AWS::ElasticLoadBalancingV2::Listener").values()
        if listener["LoadBalancerArn"] == {"Ref": load_balancer}
    }


@pytest.mark.parametrize("stage", STAGES)
def test_public_alb_https_when_a_domain_is_configured(synthesized, stage):
    config = synthesized.stages[stage]
    template = synthesized.json(stage, "Application")
    app = synthesized.built[stage].application
    public_alb = logical_id(app.public_alb)
    public = listeners(template, public_alb)
    if config.https:
        assert set(public) == {80, 443}
        assert public[443]["Protocol"] == "HTTPS"
        assert public[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
        assert public[443]["Certificates"]
        (redirect,) = public[80]["DefaultActions"]
        assert redirect["Type"] == "redirect"
        assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
        assert resources(template, "AWS::Route53::RecordSet"), "names for the ALB and the NLB"
    else:
        assert set(public) == {80}
        assert public[80]["Protocol"] == "HTTP"
        assert public[80]["DefaultActions"][0]["Type"] == "forward"
        assert not resources(template, "AWS::CertificateManager::Certificate")
    (alb,) = [
        lb
        for name, lb in resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
        if name == public_alb
    ]
    attributes = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["deletion_protection.enabled"] == str(config.deletion_protection).lower()
    assert alb["Scheme"] == "internet-facing"


@pytest.mark.parametrize("stage", STAGES)
def test_hls_origin_through_the_alb_and_ingest_routes_only_internally(synthesized, stage):
    template = synthesized.json(stage, "Application")
    app = synthesized.built[stage].application
    by_listener: dict[str, list[dict[str, Any]]] = {}
    for rule in resources(template, "AWS::ElasticLoadBalancingV2::ListenerRule").values():
        by_listener.setdefault(rule["ListenerArn"]["Ref"], []).append(rule)
    public = {
        tuple(r["Conditions"][0]["PathPatternConfig"]["Values"]): r["Actions"][0]
        for r in by_listener[logical_id(app.public_listener)]
    }
    assert public[("/hls/*",)]["TargetGroupArn"] == {"Ref": logical_id(app.origin_targets)}
    assert public[("/api/v1/ingest/*",)]["Type"] == "fixed-response"
    assert public[("/api/v1/ingest/*",)]["FixedResponseConfig"]["StatusCode"] == "404"
    (internal_listener,) = [
        name
        for name, listener in resources(template, "AWS::ElasticLoadBalancingV2::Listener").items()
        if listener["LoadBalancerArn"] == {"Ref": logical_id(app.internal_alb)}
    ]
    (internal_rule,) = by_listener[internal_listener]
    assert internal_rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/api/v1/ingest/*"]
    internal_lb = template["Resources"][logical_id(app.internal_alb)]["Properties"]
    assert internal_lb["Scheme"] == "internal"
    ingest_env = environment(containers(template)["ingest"])
    assert ingest_env["STREAMR_INGEST_COORDINATOR_URL"] == {
        "Fn::Join": ["", ["http://", {"Fn::GetAtt": [logical_id(app.internal_alb), "DNSName"]}]]
    }
    origin = template["Resources"][logical_id(app.origin_targets)]["Properties"]
    assert (origin["Port"], origin["HealthCheckPath"], origin["Matcher"]) == (
        8080,
        "/",
        {"HttpCode": "404"},
    )
    coordinator = template["Resources"][logical_id(app.coordinator_targets)]["Properties"]
    assert (coordinator["Port"], coordinator["HealthCheckPath"]) == (8000, "/health")


@pytest.mark.parametrize("stage", STAGES)
def test_rtmp_through_the_nlb_keeping_the_streamers_address(synthesized, stage):
    template = synthesized.json(stage, "Application")
    app = synthesized.built[stage].application
    nlb = template["Resources"][logical_id(app.nlb)]["Properties"]
    assert (nlb["Type"], nlb["Scheme"]) == ("network", "internet-facing")
    assert len(nlb["SecurityGroups"]) == 1
    (listener,) = listeners(template, logical_id(app.nlb)).values()
    assert (listener["Port"], listener["Protocol"]) == (1935, "TCP")
    targets = template["Resources"][logical_id(app.rtmp_targets)]["Properties"]
    attributes = {a["Key"]: a["Value"] for a in targets["TargetGroupAttributes"]}
    assert attributes["preserve_client_ip.enabled"] == "true"
    assert (targets["Port"], targets["Protocol"], targets["TargetType"]) == (1935, "TCP", "ip")
    coordinator_env = environment(containers(template)["coordinator"])
    rtmp_url = json.dumps(coordinator_env["STREAMR_INGEST_RTMP_URL"])
    config = synthesized.stages[stage]
    if config.rtmp_domain_name:
        assert coordinator_env["STREAMR_INGEST_RTMP_URL"] == (
            f"rtmp://{config.rtmp_domain_name}:1935/live"
        )
    else:
        assert logical_id(app.nlb) in rtmp_url and rtmp_url.endswith(':1935/live"]]}')


@pytest.mark.parametrize("stage", STAGES)
def test_ingest_work_directory_on_encrypted_efs(synthesized, stage):
    template = synthesized.json(stage, "Application")
    ingest = containers(template)["ingest"]
    (volume,) = [v for v in ingest["_task"]["Volumes"] if "EFSVolumeConfiguration" in v]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED"
    assert efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    mounts = {m["ContainerPath"]: m["SourceVolume"] for m in ingest["MountPoints"]}
    assert mounts["/var/lib/streamr/ingest"] == volume["Name"]


@pytest.mark.parametrize("stage", STAGES)
def test_migrations_run_once_per_deploy_before_the_services(synthesized, stage):
    template = synthesized.json(stage, "Application")
    app = synthesized.built[stage].application
    migrations = logical_id(app.migrations)
    resource = template["Resources"][migrations]
    assert resource["Type"] == "Custom::StreamrMigrations"
    props = resource["Properties"]
    assert props["TaskDefinition"] == {"Ref": logical_id(app.ops_task)}
    assert props["ContainerName"] == "migrate"
    assert props["ImageTag"] == IMAGE_TAG
    for service in (app.coordinator, app.worker):
        depends = template["Resources"][logical_id(service)].get("DependsOn", [])
        assert migrations in depends
    # The runner may start exactly this task definition, and pass its roles, nothing more.
    policies = resources(template, "AWS::IAM::Policy")
    run_task = [
        s
        for p in policies.values()
        for s in p["PolicyDocument"]["Statement"]
        if s["Action"] == "ecs:RunTask"
    ]
    assert run_task and all(s["Resource"] == {"Ref": logical_id(app.ops_task)} for s in run_task)


def test_prod_differs_from_beta_where_it_should(synthesized):
    beta, prod = (synthesized.stages[s] for s in ("beta", "prod"))
    assert (beta.https, prod.https) == (False, True)
    beta_sizes = resources(synthesized.json("beta", "Application"), "AWS::ECS::TaskDefinition")
    prod_sizes = resources(synthesized.json("prod", "Application"), "AWS::ECS::TaskDefinition")
    size = {t["Family"].split("-")[-1]: int(t["Cpu"]) for t in beta_sizes.values()}
    prod_size = {t["Family"].split("-")[-1]: int(t["Cpu"]) for t in prod_sizes.values()}
    assert prod_size["coordinator"] > size["coordinator"]
    assert (
        services(synthesized, "prod")["coordinator"]["DesiredCount"]
        > services(synthesized, "beta")["coordinator"]["DesiredCount"]
    )
    prod_logs = resources(synthesized.json("prod", "Application"), "AWS::Logs::LogGroup")
    assert {g.get("LogGroupName") for g in prod_logs.values()} >= {
        "/streamr/prod/coordinator",
        "/streamr/prod/worker",
        "/streamr/prod/ingest",
        "/streamr/prod/migrate",
    }


def test_task_settings_are_settings_the_programs_read(synthesized):
    """A misspelt STREAMR_* variable would be ignored silently: every one must be a setting."""
    from streamr_coordinator.settings import Settings
    from streamr_ingest.config import IngestSettings

    coordinator = {f"STREAMR_{name.upper()}" for name in Settings.model_fields}
    ingest = {f"STREAMR_INGEST_{name.upper()}" for name in IngestSettings.model_fields}
    ingest.add("STREAMR_DATA_DIR")
    for stage in STAGES:
        for name, container in containers(synthesized.json(stage, "Application")).items():
            known = ingest if name == "ingest" else coordinator
            names = set(environment(container)) | {s["Name"] for s in container.get("Secrets", [])}
            unknown = {n for n in names if n.startswith("STREAMR_")} - known
            assert not unknown, f"{stage} {name}: {unknown}"
