"""Foundation stack: what holds state or is shared, and changes rarely.

The network (public, private and isolated subnets), every security group and every rule between
them (in one place, so that who may talk to whom is read here and nowhere else), RDS
PostgreSQL and ElastiCache Redis in the isolated subnets, the encrypted file system that keeps
the ingest's HLS work directory across task restarts, the secrets, and the ECR repositories.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_efs as efs
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from .config import StageConfig

LAMBDAS = Path(__file__).resolve().parent / "lambdas"

DB_NAME = "streamr"
DB_USER = "streamr"
DB_PORT = 5432
REDIS_PORT = 6379
COORDINATOR_PORT = 8000
ORIGIN_PORT = 8080
RTMP_PORT = 1935
NFS_PORT = 2049
APP_UID = 10001  # the images' non-root user (see the Dockerfiles)
IMAGES = ("coordinator", "ingest")  # the worker runs the coordinator's image

# The database password and the Redis token end up inside URLs (container_commands.py):
# letters and digits only, which need no escaping there.
NO_PUNCTUATION = "".join(sorted(set(string.punctuation) | {" "}))


_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}


def log_retention(stage: StageConfig) -> logs.RetentionDays:
    return getattr(logs.RetentionDays, _RETENTION[stage.log_retention_days])


def removal_policy(stage: StageConfig) -> cdk.RemovalPolicy:
    """Stateful resources of protected stages outlive their stack; beta's are disposable."""
    return cdk.RemovalPolicy.RETAIN if stage.deletion_protection else cdk.RemovalPolicy.DESTROY


@dataclass(frozen=True)
class SecurityGroups:
    public_alb: ec2.SecurityGroup
    internal_alb: ec2.SecurityGroup
    nlb: ec2.SecurityGroup
    coordinator: ec2.SecurityGroup
    worker: ec2.SecurityGroup
    migrations: ec2.SecurityGroup
    ingest: ec2.SecurityGroup
    database: ec2.SecurityGroup
    redis: ec2.SecurityGroup
    files: ec2.SecurityGroup


class FoundationStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, **kw) -> None:
        super().__init__(scope, construct_id, **kw)
        self.stage = stage
        self.vpc = self._network()
        self.security_groups = self._security_groups()
        self.database = self._database()
        self.redis, self.redis_auth = self._redis()
        self.ingest_files, self.ingest_access_point = self._ingest_files()
        self.jwt_key, self.attestation_key, self.ingest_secret = self._app_secrets()
        self.monitor_account = self._monitor_account()
        self.repositories = {name: self._repository(name) for name in IMAGES}
        self._outputs()

    # ------------------------------------------------------------ network

    def _network(self) -> ec2.Vpc:
        stage = self.stage
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(stage),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        return ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(stage.vpc_cidr),
            availability_zones=list(stage.availability_zones),
            nat_gateways=stage.nat_gateways,
            # Load balancers and NAT gateways only; nothing gets a public address by default.
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                # ECS tasks: outbound through NAT (image pulls, friends' nodes), no inbound.
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                # Data stores: no route out of the VPC at all.
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            restrict_default_security_group=True,
            flow_logs={
                "rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )

    def _security_groups(self) -> SecurityGroups:
        """Every group and every rule. Nothing else adds rules: the application stack imports
        these groups immutable, so no construct can widen them behind this list's back."""
        vpc, stage = self.vpc, self.stage

        def group(name: str, description: str, *, outbound: bool = False) -> ec2.SecurityGroup:
            return ec2.SecurityGroup(
                self, f"{name}Sg", vpc=vpc, description=description, allow_all_outbound=outbound
            )

        sg = SecurityGroups(
            public_alb=group("PublicAlb", "Internet-facing ALB: the API and the HLS origin"),
            internal_alb=group(
                "InternalAlb", "Internal ALB: calls from the ingest to the coordinator"
            ),
            nlb=group("Nlb", "Internet-facing NLB: RTMP from streamers"),
            # Coordinator and worker reach friends' nodes on whatever port they serve (reachability
            # checks, probes) and AWS APIs, so their outbound traffic is not limited.
            coordinator=group("Coordinator", "Coordinator API tasks", outbound=True),
            worker=group("Worker", "Background worker tasks (no inbound)", outbound=True),
            migrations=group("Migrations", "One-off migration and operations tasks"),
            ingest=group("Ingest", "Ingest tasks: nginx-rtmp and the origin watcher"),
            database=group("Database", "RDS PostgreSQL"),
            redis=group("Redis", "ElastiCache Redis"),
            files=group("IngestFiles", "EFS holding the HLS work directory of the ingest"),
        )
        tcp = ec2.Port.tcp
        anywhere = ec2.Peer.any_ipv4()

        public_ports = [443, 80] if stage.https else [80]  # 80 only redirects when HTTPS is on
        for port in public_ports:
            sg.public_alb.add_ingress_rule(anywhere, tcp(port), f"viewers and API clients, {port}")
        sg.public_alb.add_egress_rule(sg.coordinator, tcp(COORDINATOR_PORT), "to the coordinator")
        sg.public_alb.add_egress_rule(sg.ingest, tcp(ORIGIN_PORT), "to the HLS origin")

        sg.internal_alb.add_ingress_rule(sg.ingest, tcp(80), "ingest hooks, segments, sync")
        sg.internal_alb.add_egress_rule(sg.coordinator, tcp(COORDINATOR_PORT), "to the coordinator")

        for cidr in stage.rtmp_allowed_cidrs:
            sg.nlb.add_ingress_rule(ec2.Peer.ipv4(cidr), tcp(RTMP_PORT), "RTMP from OBS")
        sg.nlb.add_egress_rule(sg.ingest, tcp(RTMP_PORT), "to the ingest")

        sg.coordinator.add_ingress_rule(sg.public_alb, tcp(COORDINATOR_PORT), "from the public ALB")
        sg.coordinator.add_ingress_rule(
            sg.internal_alb, tcp(COORDINATOR_PORT), "from the internal ALB"
        )

        sg.ingest.add_ingress_rule(sg.nlb, tcp(RTMP_PORT), "RTMP through the NLB")
        sg.ingest.add_ingress_rule(sg.public_alb, tcp(ORIGIN_PORT), "HLS origin through the ALB")
        sg.ingest.add_egress_rule(sg.internal_alb, tcp(80), "to the coordinator, internally")
        sg.ingest.add_egress_rule(sg.files, tcp(NFS_PORT), "its work directory on EFS")
        sg.ingest.add_egress_rule(anywhere, tcp(443), "ECR, Secrets Manager, CloudWatch Logs")

        sg.migrations.add_egress_rule(sg.database, tcp(DB_PORT), "migrations")
        sg.migrations.add_egress_rule(anywhere, tcp(443), "ECR, Secrets Manager, CloudWatch Logs")

        for client in (sg.coordinator, sg.worker, sg.migrations):
            sg.database.add_ingress_rule(client, tcp(DB_PORT), "PostgreSQL")
        for client in (sg.coordinator, sg.worker):
            sg.redis.add_ingress_rule(client, tcp(REDIS_PORT), "Redis")
        sg.files.add_ingress_rule(sg.ingest, tcp(NFS_PORT), "NFS from the ingest")
        return sg

    # ------------------------------------------------------------ data stores

    def _database(self) -> rds.DatabaseInstance:
        stage = self.stage
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_9)
        parameters = rds.ParameterGroup(
            self,
            "DatabaseParameters",
            engine=engine,
            description="StreamrP2P: TLS required, slow statements logged",
            parameters={"rds.force_ssl": "1", "log_min_duration_statement": "1000"},
        )
        burstable = stage.db_instance_type.startswith(("t3.", "t4g."))
        return rds.DatabaseInstance(
            self,
            "Database",
            engine=engine,
            instance_type=ec2.InstanceType(stage.db_instance_type),
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_groups.database],
            publicly_accessible=False,
            database_name=DB_NAME,
            port=DB_PORT,
            credentials=rds.Credentials.from_generated_secret(
                DB_USER, exclude_characters=NO_PUNCTUATION
            ),
            parameter_group=parameters,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=stage.db_allocated_storage_gib,
            max_allocated_storage=stage.db_max_allocated_storage_gib,
            multi_az=stage.multi_az,
            backup_retention=cdk.Duration.days(stage.db_backup_retention_days),
            copy_tags_to_snapshot=True,
            deletion_protection=stage.deletion_protection,
            delete_automated_backups=not stage.deletion_protection,
            removal_policy=(
                cdk.RemovalPolicy.SNAPSHOT
                if stage.deletion_protection
                else cdk.RemovalPolicy.DESTROY
            ),
            auto_minor_version_upgrade=True,
            enable_performance_insights=not burstable,
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=log_retention(stage),
        )

    def _redis(self) -> tuple[elasticache.CfnReplicationGroup, secretsmanager.Secret]:
        stage = self.stage
        auth = secretsmanager.Secret(
            self,
            "RedisAuthToken",
            description=f"{stage.prefix}: Redis AUTH token (ECS injects it as REDIS_AUTH_TOKEN)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        subnets = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description=f"{stage.prefix}: isolated subnets",
            subnet_ids=self.vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
            ).subnet_ids,
        )
        redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description=f"{stage.prefix}: presence, throttling, caches",
            engine="redis",
            engine_version="7.1",
            cache_node_type=stage.redis_node_type,
            num_cache_clusters=2 if stage.multi_az else 1,
            automatic_failover_enabled=stage.multi_az,
            multi_az_enabled=stage.multi_az,
            port=REDIS_PORT,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_groups.redis.security_group_id],
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            # A dynamic reference: CloudFormation resolves it; the token is never in a template.
            auth_token=auth.secret_value.unsafe_unwrap(),
            snapshot_retention_limit=stage.redis_snapshot_retention_days,
            auto_minor_version_upgrade=True,
        )
        redis.apply_removal_policy(
            cdk.RemovalPolicy.SNAPSHOT if stage.deletion_protection else cdk.RemovalPolicy.DESTROY
        )
        return redis, auth

    def _ingest_files(self) -> tuple[efs.FileSystem, efs.AccessPoint]:
        """nginx-rtmp numbers segments on from its last playlist; keeping the work directory
        across task replacements keeps sequence numbers the coordinator has signed unique."""
        files = efs.FileSystem(
            self,
            "IngestFiles",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=self.security_groups.files,
            encrypted=True,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            lifecycle_policy=None,
            removal_policy=removal_policy(self.stage),
        )
        # Only through the access point, only with TLS, only with IAM authorization.
        files.add_to_resource_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["*"],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        access_point = files.add_access_point(
            "IngestWorkDir",
            path="/ingest",
            posix_user=efs.PosixUser(uid=str(APP_UID), gid=str(APP_UID)),
            create_acl=efs.Acl(owner_uid=str(APP_UID), owner_gid=str(APP_UID), permissions="700"),
        )
        return files, access_point

    # ------------------------------------------------------------ secrets

    def _app_secrets(
        self,
    ) -> tuple[secretsmanager.Secret, secretsmanager.Secret, secretsmanager.Secret]:
        prefix = self.stage.prefix
        jwt_key = secretsmanager.Secret(
            self,
            "JwtSigningKey",
            description=f"{prefix}: STREAMR_JWT_PRIVATE_KEY (PEM Ed25519, access tokens)",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        attestation_key = secretsmanager.Secret(
            self,
            "AttestationSigningKey",
            description=f"{prefix}: STREAMR_ATTESTATION_PRIVATE_KEY (PEM Ed25519, segments)",
            removal_policy=removal_policy(self.stage),
        )
        ingest_secret = secretsmanager.Secret(
            self,
            "IngestSecret",
            description=f"{prefix}: STREAMR_INGEST_SECRET shared by the coordinator and ingest",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=48
            ),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        handler = lambda_.Function(
            self,
            "SigningKeysFunction",
            description=f"{prefix}: puts a fresh Ed25519 key into new signing-key secrets",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(LAMBDAS / "signing_keys")),
            timeout=cdk.Duration.seconds(30),
            log_group=self._function_logs("SigningKeysLogs"),
        )
        for secret in (jwt_key, attestation_key):
            secret.grant_read(handler)
            secret.grant_write(handler)
        provider = cr.Provider(
            self,
            "SigningKeysProvider",
            on_event_handler=handler,
            log_group=self._function_logs("SigningKeysProviderLogs"),
        )
        keys = cdk.CustomResource(
            self,
            "SigningKeys",
            service_token=provider.service_token,
            resource_type="Custom::StreamrSigningKeys",
            properties={"SecretArns": [jwt_key.secret_arn, attestation_key.secret_arn]},
        )
        self.signing_keys_ready = keys
        return jwt_key, attestation_key, ingest_secret

    def _monitor_account(self) -> secretsmanager.Secret:
        """An admin the metrics collector logs in as (created by
        scripts/operational-monitor-account.sh); its password is generated here."""
        return secretsmanager.Secret(
            self,
            "MonitorAccount",
            description=f"{self.stage.prefix}: the metrics collector's admin login",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(
                    {"email": f"monitor+{self.stage.name}@streamr-monitor.example.com"}
                ),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=40,
            ),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

    def _function_logs(self, construct_id: str) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            retention=log_retention(self.stage),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

    # ------------------------------------------------------------ images

    def _repository(self, name: str) -> ecr.Repository:
        protected = self.stage.deletion_protection
        return ecr.Repository(
            self,
            f"{name.title()}Repository",
            repository_name=f"{self.stage.prefix}/{name}",
            # A tag always names the same image: what was tested is what runs.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS,  # the AWS-managed aws/ecr key
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="untagged layers go after a week",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=cdk.Duration.days(7),
                    rule_priority=1,
                ),
                ecr.LifecycleRule(
                    description="keep the newest 100 releases (rollback targets)",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=100,
                    rule_priority=2,
                ),
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN if protected else cdk.RemovalPolicy.DESTROY,
            empty_on_delete=not protected,
        )

    def _outputs(self) -> None:
        for name, repository in self.repositories.items():
            cdk.CfnOutput(self, f"{name.title()}RepositoryUri", value=repository.repository_uri)
        cdk.CfnOutput(self, "DatabaseEndpoint", value=self.database.db_instance_endpoint_address)
        cdk.CfnOutput(self, "DatabaseInstanceId", value=self.database.instance_identifier)
        cdk.CfnOutput(self, "DatabaseSecretArn", value=self.database.secret.secret_arn)
        cdk.CfnOutput(self, "RedisReplicationGroupId", value=self.redis.ref)
        cdk.CfnOutput(self, "RedisAuthSecretArn", value=self.redis_auth.secret_arn)
        cdk.CfnOutput(self, "JwtKeySecretArn", value=self.jwt_key.secret_arn)
        cdk.CfnOutput(self, "AttestationKeySecretArn", value=self.attestation_key.secret_arn)
        cdk.CfnOutput(self, "IngestSecretArn", value=self.ingest_secret.secret_arn)
        cdk.CfnOutput(self, "MonitorAccountSecretArn", value=self.monitor_account.secret_arn)
        # Where one-off tasks (scripts/operational-migrate.sh) run.
        private = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        cdk.CfnOutput(self, "PrivateSubnets", value=cdk.Fn.join(",", private.subnet_ids))
        cdk.CfnOutput(
            self, "OpsSecurityGroup", value=self.security_groups.migrations.security_group_id
        )
