"""The foundation stack: network tiers, data stores kept private and encrypted, secrets,
security-group rules (exactly what each part needs), images, and what differs by stage."""

from __future__ import annotations

import string
from typing import Any

import pytest
from aws_cdk.assertions import Match
from infra_helpers import logical_id, resources

STAGES = ("beta", "gamma", "prod")


def subnet_kinds(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> {"type": Public/Private/Isolated, "routes": [route properties]}."""
    subnets = resources(template, "AWS::EC2::Subnet")
    table_of = {
        a["SubnetId"]["Ref"]: a["RouteTableId"]["Ref"]
        for a in resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    routes = resources(template, "AWS::EC2::Route").values()
    kinds = {}
    for name, subnet in subnets.items():
        tags = {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
        table = table_of[name]
        kinds[name] = {
            "type": tags["aws-cdk:subnet-type"],
            "public_ip": subnet.get("MapPublicIpOnLaunch", False),
            "routes": [r for r in routes if r["RouteTableId"]["Ref"] == table],
        }
    return kinds


@pytest.mark.parametrize("stage", STAGES)
def test_vpc_has_public_private_and_isolated_subnets_in_each_zone(synthesized, stage):
    config = synthesized.stages[stage]
    kinds = subnet_kinds(synthesized.json(stage, "Foundation"))
    zones = len(config.availability_zones)
    counts = {
        kind: sum(k["type"] == kind for k in kinds.values())
        for kind in ("Public", "Private", "Isolated")
    }
    assert counts == {"Public": zones, "Private": zones, "Isolated": zones}
    assert not any(k["public_ip"] for k in kinds.values()), "nothing gets a public IP by default"
    for kind in kinds.values():
        targets = {key for route in kind["routes"] for key in route if key.endswith("Id")}
        if kind["type"] == "Isolated":
            assert kind["routes"] == [], "isolated subnets have no route out of the VPC"
        elif kind["type"] == "Private":
            assert "NatGatewayId" in targets and "GatewayId" not in targets
        else:
            assert "GatewayId" in targets
    nat = resources(synthesized.json(stage, "Foundation"), "AWS::EC2::NatGateway")
    assert len(nat) == config.nat_gateways


@pytest.mark.parametrize("stage", STAGES)
def test_no_database_or_cache_in_a_public_subnet(synthesized, stage):
    template = synthesized.json(stage, "Foundation")
    kinds = subnet_kinds(template)
    (db_subnets,) = resources(template, "AWS::RDS::DBSubnetGroup").values()
    (cache_subnets,) = resources(template, "AWS::ElastiCache::SubnetGroup").values()
    for group in (db_subnets, cache_subnets):
        refs = [s["Ref"] for s in group["SubnetIds"]]
        assert refs and {kinds[r]["type"] for r in refs} == {"Isolated"}
    (database,) = resources(template, "AWS::RDS::DBInstance").values()
    assert database["PubliclyAccessible"] is False
    # EFS mount targets (the ingest's work directory) sit in private subnets, never public.
    for target in resources(template, "AWS::EFS::MountTarget").values():
        assert kinds[target["SubnetId"]["Ref"]]["type"] == "Private"


@pytest.mark.parametrize("stage", STAGES)
def test_database_encrypted_with_credentials_in_secrets_manager(synthesized, stage):
    config = synthesized.stages[stage]
    template = synthesized.template(stage, "Foundation")
    template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "postgres",
            "StorageEncrypted": True,
            "DBName": "streamr",
            "MultiAZ": config.multi_az,
            "BackupRetentionPeriod": config.db_backup_retention_days,
            "DeletionProtection": config.deletion_protection,
            "DBInstanceClass": f"db.{config.db_instance_type}",
            # The password is never in the template: CloudFormation resolves it from the secret.
            "MasterUserPassword": Match.object_like(
                {
                    "Fn::Join": Match.array_with(
                        [Match.array_with([Match.string_like_regexp("resolve:secretsmanager")])]
                    )
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Parameters": Match.object_like({"rds.force_ssl": "1"})}
    )
    template.has_resource_properties("AWS::SecretsManager::SecretTargetAttachment", {})
    # The generated password lands in a URL (container_commands.py): no punctuation allowed.
    db_secret = next(
        s
        for s in resources(
            synthesized.json(stage, "Foundation"), "AWS::SecretsManager::Secret"
        ).values()
        if '"username":"streamr"'
        in s.get("GenerateSecretString", {}).get("SecretStringTemplate", "")
    )
    assert set(string.punctuation) <= set(db_secret["GenerateSecretString"]["ExcludeCharacters"])
    instance = synthesized.json(stage, "Foundation")["Resources"][
        logical_id(synthesized.built[stage].foundation.database)
    ]
    expected = "Snapshot" if config.deletion_protection else "Delete"
    assert instance["DeletionPolicy"] == expected


@pytest.mark.parametrize("stage", STAGES)
def test_redis_encrypted_in_transit_and_at_rest_with_an_auth_token(synthesized, stage):
    config = synthesized.stages[stage]
    template = synthesized.template(stage, "Foundation")
    template.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "Engine": "redis",
            "AtRestEncryptionEnabled": True,
            "TransitEncryptionEnabled": True,
            "NumCacheClusters": 2 if config.multi_az else 1,
            "AutomaticFailoverEnabled": config.multi_az,
            "MultiAZEnabled": config.multi_az,
            "SnapshotRetentionLimit": config.redis_snapshot_retention_days,
            "AuthToken": Match.object_like(
                {
                    "Fn::Join": Match.array_with(
                        [Match.array_with([Match.string_like_regexp("resolve:secretsmanager")])]
                    )
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"GenerateSecretString": {"ExcludePunctuation": True, "PasswordLength": 64}},
    )


@pytest.mark.parametrize("stage", STAGES)
def test_ingest_files_encrypted_and_reached_only_through_the_access_point(synthesized, stage):
    template = synthesized.template(stage, "Foundation")
    template.has_resource_properties(
        "AWS::EFS::FileSystem",
        {
            "Encrypted": True,
            "FileSystemPolicy": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::EFS::AccessPoint",
        {
            "PosixUser": {"Uid": "10001", "Gid": "10001"},
            "RootDirectory": Match.object_like(
                {"Path": "/ingest", "CreationInfo": Match.object_like({"Permissions": "700"})}
            ),
        },
    )


@pytest.mark.parametrize("stage", STAGES)
def test_signing_keys_are_initialized_in_secrets_manager(synthesized, stage):
    foundation = synthesized.built[stage].foundation
    template = synthesized.json(stage, "Foundation")
    (keys,) = resources(template, "Custom::StreamrSigningKeys").values()
    assert [ref["Ref"] for ref in keys["SecretArns"]] == [
        logical_id(foundation.jwt_key),
        logical_id(foundation.attestation_key),
    ]
    ingest_secret = template["Resources"][logical_id(foundation.ingest_secret)]["Properties"]
    # The ingest secret's alphabet must satisfy streamr_protocol.ingest.SECRET_PATTERN.
    generated = ingest_secret["GenerateSecretString"]
    assert generated["ExcludePunctuation"] is True and generated["PasswordLength"] >= 32


@pytest.mark.parametrize("stage", STAGES)
def test_ecr_repositories_are_immutable_and_scanned(synthesized, stage):
    config = synthesized.stages[stage]
    repos = resources(synthesized.json(stage, "Foundation"), "AWS::ECR::Repository")
    assert {r["RepositoryName"] for r in repos.values()} == {
        f"streamr-{stage}/coordinator",
        f"streamr-{stage}/ingest",
    }
    for repo in repos.values():
        assert repo["ImageTagMutability"] == "IMMUTABLE"
        assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repo["EncryptionConfiguration"] == {"EncryptionType": "KMS"}
    policies = {
        r["DeletionPolicy"]
        for r in synthesized.json(stage, "Foundation")["Resources"].values()
        if r["Type"] == "AWS::ECR::Repository"
    }
    assert policies == {"Retain" if config.deletion_protection else "Delete"}


# ------------------------------------------------------------------ security groups


def rules(synthesized, stage: str) -> tuple[dict[str, str], set[tuple], set[tuple]]:
    """(logical id -> group name, ingress rules, egress rules) over every stack of a stage.
    A rule is (group, port, source): source a group name or a CIDR."""
    groups = synthesized.built[stage].foundation.security_groups
    names = {logical_id(getattr(groups, f)): f for f in groups.__dataclass_fields__}
    ingress: set[tuple] = set()
    egress: set[tuple] = set()

    def peer(rule: dict[str, Any]) -> str:
        for key in ("SourceSecurityGroupId", "DestinationSecurityGroupId"):
            if key in rule:
                return names[rule[key]["Fn::GetAtt"][0]]
        return rule.get("CidrIp") or rule["CidrIpv6"]

    def port(rule: dict[str, Any]) -> int | str:
        if rule["IpProtocol"] == "-1":
            return "all"
        assert rule["FromPort"] == rule["ToPort"], rule
        return rule["FromPort"]

    for stack in ("Foundation", "Application", "Monitoring"):
        template = synthesized.json(stage, stack)
        for name, sg in resources(template, "AWS::EC2::SecurityGroup").items():
            assert name in names, f"{stack} creates a security group of its own: {name}"
            for rule in sg.get("SecurityGroupIngress", []):
                ingress.add((names[name], port(rule), peer(rule)))
            for rule in sg.get("SecurityGroupEgress", []):
                if rule.get("CidrIp") != "255.255.255.255/32":  # CDK's "no egress" marker
                    egress.add((names[name], port(rule), peer(rule)))
        for kind, into in (("Ingress", ingress), ("Egress", egress)):
            for rule in resources(template, f"AWS::EC2::SecurityGroup{kind}").values():
                assert stack == "Foundation", f"{stack} adds a {kind} rule: {rule}"
                into.add((names[rule["GroupId"]["Fn::GetAtt"][0]], port(rule), peer(rule)))
    return names, ingress, egress


@pytest.mark.parametrize("stage", STAGES)
def test_security_groups_allow_only_what_each_part_needs(synthesized, stage):
    config = synthesized.stages[stage]
    _, ingress, egress = rules(synthesized, stage)
    public_ports = {443, 80} if config.https else {80}
    assert ingress == {
        *{("public_alb", p, "0.0.0.0/0") for p in public_ports},
        *{("nlb", 1935, cidr) for cidr in config.rtmp_allowed_cidrs},
        ("internal_alb", 80, "ingest"),
        ("coordinator", 8000, "public_alb"),
        ("coordinator", 8000, "internal_alb"),
        ("ingest", 1935, "nlb"),
        ("ingest", 8080, "public_alb"),
        ("database", 5432, "coordinator"),
        ("database", 5432, "worker"),
        ("database", 5432, "migrations"),
        ("redis", 6379, "coordinator"),
        ("redis", 6379, "worker"),
        ("files", 2049, "ingest"),
    }
    assert egress == {
        ("public_alb", 8000, "coordinator"),
        ("public_alb", 8080, "ingest"),
        ("internal_alb", 8000, "coordinator"),
        ("nlb", 1935, "ingest"),
        # Coordinator and worker check and probe friends' nodes on any port.
        ("coordinator", "all", "0.0.0.0/0"),
        ("worker", "all", "0.0.0.0/0"),
        ("ingest", 80, "internal_alb"),
        ("ingest", 2049, "files"),
        ("ingest", 443, "0.0.0.0/0"),
        ("migrations", 5432, "database"),
        ("migrations", 443, "0.0.0.0/0"),
    }


@pytest.mark.parametrize("stage", STAGES)
def test_data_stores_use_their_own_groups(synthesized, stage):
    foundation = synthesized.built[stage].foundation
    groups = foundation.security_groups
    template = synthesized.json(stage, "Foundation")
    (database,) = resources(template, "AWS::RDS::DBInstance").values()
    (redis,) = resources(template, "AWS::ElastiCache::ReplicationGroup").values()
    (files_target, *_) = resources(template, "AWS::EFS::MountTarget").values()
    for used, group in (
        (database["VPCSecurityGroups"], groups.database),
        (redis["SecurityGroupIds"], groups.redis),
        (files_target["SecurityGroups"], groups.files),
    ):
        assert [g["Fn::GetAtt"][0] for g in used] == [logical_id(group)]
