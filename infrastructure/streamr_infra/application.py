"""Application stack: the programs, and how the world reaches them.

- coordinator: ECS Fargate, several tasks behind the public ALB, scaled on CPU and requests;
- worker: ECS Fargate, the background jobs (no inbound traffic at all);
- ingest: ECS Fargate, one task (nginx-rtmp and the origin watcher), RTMP 1935 through a
  Network Load Balancer that keeps the streamer's address, its HLS origin through the public
  ALB under /hls/, its calls to the coordinator through an internal ALB;
- migrations: a task definition run once per deploy by a custom resource, before the services
  roll (see lambdas/migrations).

The public ALB answers HTTPS when the stage has a domain (HTTP then only redirects). The
ingest's routes (/api/v1/ingest/...) are not served on it at all: only the ingest uses them,
through the internal ALB. Security groups come from the foundation stack, imported immutable.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from . import container_commands
from .config import StageConfig
from .foundation import (
    APP_UID,
    COORDINATOR_PORT,
    DB_NAME,
    LAMBDAS,
    ORIGIN_PORT,
    RTMP_PORT,
    FoundationStack,
    log_retention,
    removal_policy,
)

DATA_DIR = "/var/lib/streamr"
INGEST_WORK_DIR = f"{DATA_DIR}/ingest"
NOT_SERVED_HERE = json.dumps(
    {
        "error": {
            "status": 404,
            "code": "not_found",
            "message": "Not found. The ingest's routes are not served on the public address.",
            "details": {},
        }
    }
)


class ApplicationStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        foundation: FoundationStack,
        image_tag: str,
        **kw,
    ) -> None:
        super().__init__(scope, construct_id, **kw)
        self.stage, self.foundation, self.image_tag = stage, foundation, image_tag
        self.vpc = foundation.vpc
        self.groups = {
            name: ec2.SecurityGroup.from_security_group_id(
                self,
                f"{name}Group",
                getattr(foundation.security_groups, name).security_group_id,
                mutable=False,
            )
            for name in (
                "public_alb",
                "internal_alb",
                "nlb",
                "coordinator",
                "worker",
                "migrations",
                "ingest",
            )
        }
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            cluster_name=stage.prefix,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        self.public_alb = self._public_alb()
        self.internal_alb = elbv2.ApplicationLoadBalancer(
            self,
            "InternalAlb",
            vpc=self.vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=self.groups["internal_alb"],
            drop_invalid_header_fields=True,
        )
        self.nlb = elbv2.NetworkLoadBalancer(
            self,
            "RtmpNlb",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.groups["nlb"]],
            cross_zone_enabled=True,
            deletion_protection=stage.deletion_protection,
        )
        self.zone = (
            route53.HostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=stage.hosted_zone_id,
                zone_name=stage.hosted_zone_name,
            )
            if stage.hosted_zone_id and stage.hosted_zone_name
            else None
        )
        self.public_url = (
            f"https://{stage.domain_name}"
            if stage.https
            else f"http://{self.public_alb.load_balancer_dns_name}"
        )
        rtmp_host = stage.rtmp_domain_name or self.nlb.load_balancer_dns_name
        self.rtmp_url = f"rtmp://{rtmp_host}:{RTMP_PORT}/live"

        self.log_groups: dict[str, logs.LogGroup] = {}
        self.coordinator = self._coordinator_service()
        self.worker = self._worker_service()
        self.ingest = self._ingest_service()
        self.ops_task = self._ops_task()
        self.migrations = self._migrations()
        for service in (self.coordinator, self.worker):
            service.node.add_dependency(self.migrations)

        self._routing()
        self._autoscaling()
        self._dns()
        self._outputs()

    # ------------------------------------------------------------ load balancers

    def _public_alb(self) -> elbv2.ApplicationLoadBalancer:
        stage = self.stage
        logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only kind ALB log delivery writes
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(90))],
            removal_policy=removal_policy(stage),
            auto_delete_objects=not stage.deletion_protection,
        )
        alb = elbv2.ApplicationLoadBalancer(
            self,
            "PublicAlb",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.groups["public_alb"],
            drop_invalid_header_fields=True,
            deletion_protection=stage.deletion_protection,
            idle_timeout=cdk.Duration.seconds(60),
        )
        alb.log_access_logs(logs_bucket, prefix="public-alb")
        return alb

    def _routing(self) -> None:
        stage, alb = self.stage, self.public_alb
        self.coordinator_targets = elbv2.ApplicationTargetGroup(
            self,
            "CoordinatorTargets",
            vpc=self.vpc,
            port=COORDINATOR_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.coordinator.load_balancer_target(container_name="coordinator")],
            health_check=elbv2.HealthCheck(
                path="/health",
                healthy_http_codes="200",
                interval=cdk.Duration.seconds(15),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            deregistration_delay=cdk.Duration.seconds(30),
        )
        self.origin_targets = elbv2.ApplicationTargetGroup(
            self,
            "OriginTargets",
            vpc=self.vpc,
            port=ORIGIN_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[
                self.ingest.load_balancer_target(
                    container_name="ingest", container_port=ORIGIN_PORT
                )
            ],
            # The origin serves only /hls/<stream>/...; nginx answering 404 anywhere else is
            # what "the origin is up" looks like from outside.
            health_check=elbv2.HealthCheck(
                path="/", healthy_http_codes="404", interval=cdk.Duration.seconds(15)
            ),
            deregistration_delay=cdk.Duration.seconds(10),
        )
        if stage.https:
            certificate = (
                acm.Certificate.from_certificate_arn(self, "Certificate", stage.certificate_arn)
                if stage.certificate_arn
                else acm.Certificate(
                    self,
                    "Certificate",
                    domain_name=stage.domain_name,
                    validation=acm.CertificateValidation.from_dns(self.zone),
                )
            )
            main = alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[certificate],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_target_groups=[self.coordinator_targets],
            )
            alb.add_listener(
                "HttpRedirect",
                port=80,
                open=False,
                default_action=elbv2.ListenerAction.redirect(
                    protocol="HTTPS", port="443", permanent=True
                ),
            )
        else:
            main = alb.add_listener(
                "Http", port=80, open=False, default_target_groups=[self.coordinator_targets]
            )
        main.add_action(
            "NoIngestRoutes",
            priority=5,
            conditions=[elbv2.ListenerCondition.path_patterns(["/api/v1/ingest/*"])],
            action=elbv2.ListenerAction.fixed_response(
                404, content_type="application/json", message_body=NOT_SERVED_HERE
            ),
        )
        main.add_action(
            "OriginHls",
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(["/hls/*"])],
            action=elbv2.ListenerAction.forward([self.origin_targets]),
        )
        self.public_listener = main

        internal_targets = elbv2.ApplicationTargetGroup(
            self,
            "CoordinatorInternalTargets",
            vpc=self.vpc,
            port=COORDINATOR_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.coordinator.load_balancer_target(container_name="coordinator")],
            health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200"),
            deregistration_delay=cdk.Duration.seconds(30),
        )
        internal = self.internal_alb.add_listener(
            "Http",
            port=80,
            open=False,
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="application/json", message_body=NOT_SERVED_HERE
            ),
        )
        internal.add_action(
            "IngestRoutes",
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(["/api/v1/ingest/*"])],
            action=elbv2.ListenerAction.forward([internal_targets]),
        )

        self.rtmp_targets = elbv2.NetworkTargetGroup(
            self,
            "RtmpTargets",
            vpc=self.vpc,
            port=RTMP_PORT,
            protocol=elbv2.Protocol.TCP,
            target_type=elbv2.TargetType.IP,
            # The coordinator throttles refused publishes per address: it must see the
            # streamer's, not the load balancer's.
            preserve_client_ip=True,
            targets=[
                self.ingest.load_balancer_target(container_name="ingest", container_port=RTMP_PORT)
            ],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.TCP, interval=cdk.Duration.seconds(10)
            ),
            deregistration_delay=cdk.Duration.seconds(30),
        )
        self.nlb.add_listener(
            "Rtmp",
            port=RTMP_PORT,
            protocol=elbv2.Protocol.TCP,
            default_target_groups=[self.rtmp_targets],
        )

    def _dns(self) -> None:
        stage = self.stage
        if self.zone is None or stage.domain_name is None or stage.rtmp_domain_name is None:
            return
        route53.ARecord(
            self,
            "ApiRecord",
            zone=self.zone,
            record_name=stage.domain_name,
            target=route53.RecordTarget.from_alias(
                route53_targets.LoadBalancerTarget(self.public_alb)
            ),
        )
        route53.ARecord(
            self,
            "RtmpRecord",
            zone=self.zone,
            record_name=stage.rtmp_domain_name,
            target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.nlb)),
        )

    # ------------------------------------------------------------ tasks

    def _log_group(self, name: str) -> logs.LogGroup:
        group = logs.LogGroup(
            self,
            f"{name.title()}Logs",
            log_group_name=f"/streamr/{self.stage.name}/{name}",
            retention=log_retention(self.stage),
            removal_policy=removal_policy(self.stage),
        )
        self.log_groups[name] = group
        return group

    def _task(self, name: str, size) -> ecs.FargateTaskDefinition:
        return ecs.FargateTaskDefinition(
            self,
            f"{name.title()}Task",
            family=f"{self.stage.prefix}-{name}",
            cpu=size.cpu,
            memory_limit_mib=size.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )

    def _image(self, repository: str) -> ecs.ContainerImage:
        return ecs.ContainerImage.from_ecr_repository(
            self.foundation.repositories[repository], tag=self.image_tag
        )

    def _writable(
        self,
        task: ecs.FargateTaskDefinition,
        container: ecs.ContainerDefinition,
        paths: dict[str, str],
    ) -> None:
        """The root file system is read-only; these paths get task-local scratch volumes."""
        for volume, path in paths.items():
            task.add_volume(name=volume)
            container.add_mount_points(
                ecs.MountPoint(source_volume=volume, container_path=path, read_only=False)
            )

    def _database_environment(self) -> tuple[dict[str, str], dict[str, ecs.Secret]]:
        database = self.foundation.database
        assert database.secret is not None
        environment = {
            "DB_HOST": database.db_instance_endpoint_address,
            "DB_PORT": database.db_instance_endpoint_port,
            "DB_NAME": DB_NAME,
        }
        secrets = {
            "DB_USER": ecs.Secret.from_secrets_manager(database.secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
        }
        return environment, secrets

    def _coordinator_environment(self, *, background_jobs: bool) -> dict[str, str]:
        redis = self.foundation.redis
        return {
            "STREAMR_DATA_DIR": DATA_DIR,
            "STREAMR_HOST": "0.0.0.0",  # noqa: S104 - inside the task; the security group decides
            "STREAMR_PORT": str(COORDINATOR_PORT),
            "STREAMR_PUBLIC_URL": self.public_url,
            "STREAMR_INGEST_RTMP_URL": self.rtmp_url,
            # Nodes and viewers fetch the origin's HLS through the public ALB (/hls/...).
            "STREAMR_ORIGIN_URL": self.public_url,
            "STREAMR_AUTO_MIGRATE": "false",
            "STREAMR_RUN_BACKGROUND_JOBS": "true" if background_jobs else "false",
            "STREAMR_LOG_LEVEL": "INFO",
            "REDIS_HOST": redis.attr_primary_end_point_address,
            "REDIS_PORT": redis.attr_primary_end_point_port,
        }

    def _coordinator_service(self) -> ecs.FargateService:
        stage, foundation = self.stage, self.foundation
        task = self._task("coordinator", stage.coordinator)
        db_env, db_secrets = self._database_environment()
        container = task.add_container(
            "coordinator",
            image=self._image("coordinator"),
            command=container_commands.streamr(["coordinator", "--behind-proxy"], redis=True),
            environment=self._coordinator_environment(background_jobs=False) | db_env,
            secrets=db_secrets
            | {
                "REDIS_AUTH_TOKEN": ecs.Secret.from_secrets_manager(foundation.redis_auth),
                "STREAMR_JWT_PRIVATE_KEY": ecs.Secret.from_secrets_manager(foundation.jwt_key),
                "STREAMR_ATTESTATION_PRIVATE_KEY": ecs.Secret.from_secrets_manager(
                    foundation.attestation_key
                ),
                "STREAMR_INGEST_SECRET": ecs.Secret.from_secrets_manager(foundation.ingest_secret),
            },
            user=f"{APP_UID}:{APP_UID}",
            readonly_root_filesystem=True,
            port_mappings=[ecs.PortMapping(container_port=COORDINATOR_PORT)],
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="coordinator", log_group=self._log_group("coordinator")
            ),
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    "import urllib.request; "
                    f"urllib.request.urlopen('http://127.0.0.1:{COORDINATOR_PORT}/health', "
                    "timeout=3)",
                ],
                interval=cdk.Duration.seconds(15),
                start_period=cdk.Duration.seconds(30),
            ),
            stop_timeout=cdk.Duration.seconds(30),
        )
        self._writable(task, container, {"data": DATA_DIR, "tmp": "/tmp"})  # noqa: S108
        return ecs.FargateService(
            self,
            "CoordinatorService",
            cluster=self.cluster,
            service_name="coordinator",
            task_definition=task,
            desired_count=stage.coordinator_min_tasks,
            security_groups=[self.groups["coordinator"]],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=cdk.Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _worker_service(self) -> ecs.FargateService:
        stage, foundation = self.stage, self.foundation
        task = self._task("worker", stage.worker)
        db_env, db_secrets = self._database_environment()
        container = task.add_container(
            "worker",
            image=self._image("coordinator"),
            command=container_commands.streamr(["worker"], redis=True),
            environment=self._coordinator_environment(background_jobs=True) | db_env,
            secrets=db_secrets
            | {"REDIS_AUTH_TOKEN": ecs.Secret.from_secrets_manager(foundation.redis_auth)},
            user=f"{APP_UID}:{APP_UID}",
            readonly_root_filesystem=True,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="worker", log_group=self._log_group("worker")
            ),
            stop_timeout=cdk.Duration.seconds(60),
        )
        self._writable(task, container, {"data": DATA_DIR, "tmp": "/tmp"})  # noqa: S108
        return ecs.FargateService(
            self,
            "WorkerService",
            cluster=self.cluster,
            service_name="worker",
            task_definition=task,
            desired_count=stage.worker_tasks,
            security_groups=[self.groups["worker"]],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _ingest_service(self) -> ecs.FargateService:
        stage, foundation = self.stage, self.foundation
        task = self._task("ingest", stage.ingest)
        task.add_volume(
            name="work",
            efs_volume_configuration=ecs.EfsVolumeConfiguration(
                file_system_id=foundation.ingest_files.file_system_id,
                transit_encryption="ENABLED",
                authorization_config=ecs.AuthorizationConfig(
                    access_point_id=foundation.ingest_access_point.access_point_id, iam="ENABLED"
                ),
            ),
        )
        foundation.ingest_files.grant(
            task.task_role, "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"
        )
        container = task.add_container(
            "ingest",
            image=self._image("ingest"),
            command=["streamr-ingest"],
            environment={
                "STREAMR_DATA_DIR": DATA_DIR,
                "STREAMR_INGEST_WORK_DIR": INGEST_WORK_DIR,
                "STREAMR_INGEST_RTMP_HOST": "0.0.0.0",  # noqa: S104 - the security group decides
                "STREAMR_INGEST_HTTP_HOST": "0.0.0.0",  # noqa: S104
                "STREAMR_INGEST_COORDINATOR_URL": (
                    f"http://{self.internal_alb.load_balancer_dns_name}"
                ),
                "STREAMR_INGEST_LOG_LEVEL": "INFO",
            },
            secrets={
                "STREAMR_INGEST_SECRET": ecs.Secret.from_secrets_manager(foundation.ingest_secret)
            },
            user=f"{APP_UID}:{APP_UID}",
            readonly_root_filesystem=True,
            port_mappings=[
                ecs.PortMapping(container_port=RTMP_PORT),
                ecs.PortMapping(container_port=ORIGIN_PORT),
            ],
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="ingest", log_group=self._log_group("ingest")
            ),
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    f"import socket; socket.create_connection(('127.0.0.1', {RTMP_PORT}), 3)",
                ],
                interval=cdk.Duration.seconds(15),
                start_period=cdk.Duration.seconds(30),
            ),
            stop_timeout=cdk.Duration.seconds(30),
        )
        container.add_mount_points(
            ecs.MountPoint(source_volume="work", container_path=INGEST_WORK_DIR, read_only=False)
        )
        self._writable(task, container, {"tmp": "/tmp"})  # noqa: S108
        return ecs.FargateService(
            self,
            "IngestService",
            cluster=self.cluster,
            service_name="ingest",
            task_definition=task,
            # One ingest per coordinator (its reconciler speaks for every stream on air), and
            # never two at once on the same work directory: a deploy stops the old task first.
            desired_count=1,
            min_healthy_percent=0,
            max_healthy_percent=100,
            security_groups=[self.groups["ingest"]],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=cdk.Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _ops_task(self) -> ecs.FargateTaskDefinition:
        """Migrations (its default command) and other one-off `streamr` commands."""
        foundation = self.foundation
        task = self._task("ops", self.stage.worker)
        db_env, db_secrets = self._database_environment()
        monitor = foundation.monitor_account
        container = task.add_container(
            container_commands.OPS_CONTAINER,
            image=self._image("coordinator"),
            command=container_commands.streamr(["db", "upgrade"], redis=False),
            environment={"STREAMR_DATA_DIR": DATA_DIR, "STREAMR_LOG_LEVEL": "INFO"} | db_env,
            secrets=db_secrets
            | {
                "MONITOR_EMAIL": ecs.Secret.from_secrets_manager(monitor, "email"),
                "MONITOR_PASSWORD": ecs.Secret.from_secrets_manager(monitor, "password"),
            },
            user=f"{APP_UID}:{APP_UID}",
            readonly_root_filesystem=True,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="migrate", log_group=self._log_group("migrate")
            ),
        )
        self._writable(task, container, {"data": DATA_DIR, "tmp": "/tmp"})  # noqa: S108
        return task

    def _migrations(self) -> cdk.CustomResource:
        def function(name: str, handler: str) -> lambda_.Function:
            return lambda_.Function(
                self,
                name,
                description=f"{self.stage.prefix}: runs the migrations task once per deploy",
                runtime=lambda_.Runtime.PYTHON_3_12,
                handler=handler,
                code=lambda_.Code.from_asset(str(LAMBDAS / "migrations")),
                timeout=cdk.Duration.seconds(30),
                log_group=logs.LogGroup(
                    self,
                    f"{name}Logs",
                    retention=log_retention(self.stage),
                    removal_policy=cdk.RemovalPolicy.DESTROY,
                ),
            )

        start = function("MigrationsStart", "index.on_event")
        check = function("MigrationsCheck", "index.is_complete")
        self.ops_task.grant_run(start)
        start.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks"],
                resources=[self.stack_id],
            )
        )
        check.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks"],
                resources=[
                    self.format_arn(
                        service="ecs",
                        resource="task",
                        resource_name=f"{self.cluster.cluster_name}/*",
                    )
                ],
            )
        )
        provider = cr.Provider(
            self,
            "MigrationsProvider",
            on_event_handler=start,
            is_complete_handler=check,
            query_interval=cdk.Duration.seconds(15),
            total_timeout=cdk.Duration.minutes(30),
        )
        subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        return cdk.CustomResource(
            self,
            "Migrations",
            service_token=provider.service_token,
            resource_type="Custom::StreamrMigrations",
            properties={
                "Cluster": self.cluster.cluster_arn,
                # A new image or setting is a new task definition revision: migrations run again.
                "TaskDefinition": self.ops_task.task_definition_arn,
                "ContainerName": container_commands.OPS_CONTAINER,
                "Subnets": subnets.subnet_ids,
                "SecurityGroups": [self.groups["migrations"].security_group_id],
                "Stage": self.stage.name,
                "ImageTag": self.image_tag,
            },
        )

    def _autoscaling(self) -> None:
        stage = self.stage
        scaling = self.coordinator.auto_scale_task_count(
            min_capacity=stage.coordinator_min_tasks, max_capacity=stage.coordinator_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=60,
            scale_in_cooldown=cdk.Duration.minutes(5),
            scale_out_cooldown=cdk.Duration.minutes(1),
        )
        scaling.scale_on_request_count(
            "Requests",
            requests_per_target=stage.coordinator_requests_per_task,
            target_group=self.coordinator_targets,
            scale_in_cooldown=cdk.Duration.minutes(5),
            scale_out_cooldown=cdk.Duration.minutes(1),
        )

    def _outputs(self) -> None:
        values = {
            "PublicUrl": self.public_url,
            "OriginUrl": f"{self.public_url}/hls/",
            "RtmpUrl": self.rtmp_url,
            "ClusterName": self.cluster.cluster_name,
            "OpsTaskDefinitionArn": self.ops_task.task_definition_arn,
            "ImageTag": self.image_tag,
        }
        for name, value in values.items():
            cdk.CfnOutput(self, name, value=value)
