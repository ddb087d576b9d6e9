"""Monitoring stack: one dashboard of the signals that matter, and alarms that notify someone.

Signals: the ingest is up (RTMP and origin targets healthy), live streams and the friend nodes
present for them, the share of bytes friends carried, API errors and latency, coordinator and
worker tasks, database and Redis health. Streams, nodes and friends' bytes come from the
coordinator's own API, read every minute by a small collector (lambdas/metrics); the rest are
AWS's metrics. Alarms (stages with ``alarms = true``) notify an encrypted SNS topic that mails
the stage's ``alarm_emails``; they notify again when the alarm clears.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from .application import ApplicationStack
from .config import StageConfig
from .foundation import LAMBDAS, FoundationStack, log_retention

MINUTE = cdk.Duration.minutes(1)
FIVE_MINUTES = cdk.Duration.minutes(5)
GIB = 1024**3


class MonitoringStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        foundation: FoundationStack,
        application: ApplicationStack,
        **kw,
    ) -> None:
        super().__init__(scope, construct_id, **kw)
        self.stage, self.foundation, self.app = stage, foundation, application
        self.namespace = f"StreamrP2P/{stage.name}"
        self.topic = self._topic()
        self.collector = self._collector()
        self.alarms: list[cw.Alarm] = []
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=stage.prefix, default_interval=cdk.Duration.hours(3)
        )
        self._ingest()
        self._streams()
        self._api()
        self._data_stores()
        if self.alarms:
            self.dashboard.add_widgets(
                cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24, height=4)
            )
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn)
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region="
            f"{self.region}#dashboards:name={stage.prefix}",
        )

    # ------------------------------------------------------------ plumbing

    def _topic(self) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{self.stage.prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes alarms to the encrypted topic: it must be able to use the key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"StreamrP2P {self.stage.name} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        for email in self.stage.alarm_emails:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _collector(self) -> lambda_.Function:
        monitor = self.foundation.monitor_account
        function = lambda_.Function(
            self,
            "MetricsCollector",
            description=f"{self.stage.prefix}: streams, nodes and friends' bytes from the API",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(LAMBDAS / "metrics")),
            timeout=cdk.Duration.seconds(50),
            environment={
                "API_URL": self.app.public_url,
                "NAMESPACE": self.namespace,
                "MONITOR_SECRET_ARN": monitor.secret_arn,
            },
            log_group=logs.LogGroup(
                self,
                "MetricsCollectorLogs",
                retention=log_retention(self.stage),
                removal_policy=cdk.RemovalPolicy.DESTROY,
            ),
        )
        monitor.grant_read(function)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource; the namespace is the limit
                conditions={"StringEquals": {"cloudwatch:namespace": self.namespace}},
            )
        )
        events.Rule(
            self,
            "EveryMinute",
            schedule=events.Schedule.rate(MINUTE),
            targets=[events_targets.LambdaFunction(function, retry_attempts=0)],
        )
        return function

    def _custom(self, name: str, statistic: str = "Maximum", **kw) -> cw.Metric:
        return cw.Metric(
            namespace=self.namespace, metric_name=name, statistic=statistic, period=MINUTE, **kw
        )

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        comparison: cw.ComparisonOperator,
        periods: int = 3,
        missing: cw.TreatMissingData = cw.TreatMissingData.BREACHING,
    ) -> None:
        if not self.stage.alarms:
            return
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.stage.prefix}-{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _ecs_tasks(self, service: str) -> cw.Metric:
        return cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": self.app.cluster.cluster_name, "ServiceName": service},
            statistic="Minimum",
            period=MINUTE,
            label=f"{service} tasks running",
        )

    # ------------------------------------------------------------ rows

    def _ingest(self) -> None:
        app, lt = self.app, cw.ComparisonOperator.LESS_THAN_THRESHOLD
        rtmp = app.rtmp_targets.metrics.healthy_host_count(
            statistic="Minimum", period=MINUTE, label="RTMP targets healthy"
        )
        origin = app.origin_targets.metrics.healthy_host_count(
            statistic="Minimum", period=MINUTE, label="origin targets healthy"
        )
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# StreamrP2P {self.stage.name}\nAPI {app.public_url} · RTMP "
                f"{app.rtmp_url}",
                width=24,
                height=2,
            ),
            cw.SingleValueWidget(
                title="Ingest up", metrics=[rtmp, origin, self._ecs_tasks("ingest")], width=12
            ),
        )
        self._alarm(
            "IngestDown",
            "No healthy ingest behind the RTMP load balancer: streamers cannot go live.",
            rtmp,
            threshold=1,
            comparison=lt,
            periods=2,
        )
        self._alarm(
            "OriginDown",
            "No healthy HLS origin behind the ALB: nodes and viewers get no video.",
            origin,
            threshold=1,
            comparison=lt,
            periods=2,
        )

    def _streams(self) -> None:
        live = self._custom("LiveStreams", label="live streams")
        online = self._custom("NodesOnline", label="friend nodes present")
        registered = self._custom("NodesRegistered", label="friend nodes registered")
        healthy = self._custom("ApiHealthy", statistic="Minimum", label="API healthy (outside)")
        # Friends' bytes in the last hour against all bytes the ALB carried in that hour (which
        # include API traffic, so the share shown is a lower bound).
        hour = cdk.Duration.hours(1)
        share = cw.MathExpression(
            expression="IF(friends + origin > 0, 100 * friends / (friends + origin), 0)",
            using_metrics={
                "friends": self._custom("FriendBytesLastHour", statistic="Average").with_(
                    period=hour
                ),
                "origin": self.app.public_alb.metrics.processed_bytes(statistic="Sum", period=hour),
            },
            label="% of bytes served by friends (last hour, lower bound)",
            period=hour,
        )
        self.dashboard.add_widgets(
            cw.SingleValueWidget(title="API reachable", metrics=[healthy], width=12),
            cw.GraphWidget(title="Live streams", left=[live], width=8),
            cw.GraphWidget(title="Friend nodes", left=[online, registered], width=8),
            cw.GraphWidget(
                title="Share of bytes from friends",
                left=[share],
                left_y_axis=cw.YAxisProps(min=0, max=100, label="%"),
                width=8,
            ),
        )
        self._alarm(
            "ApiUnreachable",
            "The coordinator's /health did not answer 200 from outside for 3 minutes.",
            healthy,
            threshold=1,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
        )
        self._alarm(
            "MetricsCollectorFailing",
            "The metrics collector fails: streams and nodes on the dashboard are stale.",
            self.collector.metric_errors(period=FIVE_MINUTES),
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )

    def _api(self) -> None:
        app, stage = self.app, self.stage
        targets = app.coordinator_targets.metrics
        requests = targets.request_count(period=MINUTE, label="requests")
        errors = targets.http_code_target(
            elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=MINUTE, label="5xx from coordinators"
        )
        lb_errors = app.public_alb.metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, period=MINUTE, label="5xx from the ALB"
        )
        error_rate = cw.MathExpression(
            expression="IF(requests >= 20, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": errors},
            label="% of API requests failing (5xx)",
            period=MINUTE,
        )
        latency = {
            p: targets.target_response_time(statistic=p, period=MINUTE, label=f"latency {p}")
            for p in ("p50", "p90", "p99")
        }
        healthy = targets.healthy_host_count(
            statistic="Minimum", period=MINUTE, label="coordinators healthy"
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="API requests and errors", left=[requests], right=[errors, lb_errors], width=8
            ),
            cw.GraphWidget(title="API latency (s)", left=list(latency.values()), width=8),
            cw.GraphWidget(
                title="Coordinator and worker",
                left=[healthy, self._ecs_tasks("coordinator"), self._ecs_tasks("worker")],
                right=[app.coordinator.metric_cpu_utilization(period=MINUTE)],
                width=8,
            ),
        )
        gt = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        self._alarm(
            "ApiErrors",
            "More than 5% of API requests fail with 5xx.",
            error_rate,
            threshold=5,
            comparison=gt,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        self._alarm(
            "ApiSlow",
            "API p99 latency above 1 s for 5 minutes.",
            latency["p99"],
            threshold=1,
            comparison=gt,
            periods=5,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        self._alarm(
            "CoordinatorsDown",
            "No healthy coordinator behind the ALB: the API is down.",
            healthy,
            threshold=1,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            periods=2,
        )
        self._alarm(
            "WorkerNotRunning",
            "Fewer worker tasks than configured: lifecycle timers and jobs stall.",
            self._ecs_tasks("worker"),
            threshold=stage.worker_tasks,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            periods=5,
        )

    def _data_stores(self) -> None:
        stage, database = self.stage, self.foundation.database
        gt = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        db_cpu = database.metric_cpu_utilization(period=FIVE_MINUTES)
        db_free = database.metric_free_storage_space(period=FIVE_MINUTES)
        db_connections = database.metric_database_connections(period=FIVE_MINUTES)
        # A replication group's nodes are <group id>-001, -002, ...
        nodes = ["001", "002"] if stage.multi_az else ["001"]

        def redis(metric: str, label: str) -> cw.IMetric:
            """The worst of the replication group's nodes (the primary can change)."""
            per_node = {
                f"{metric.lower()}{i}": cw.Metric(
                    namespace="AWS/ElastiCache",
                    metric_name=metric,
                    dimensions_map={
                        "CacheClusterId": cdk.Fn.join("-", [self.foundation.redis.ref, node])
                    },
                    statistic="Maximum",
                    period=FIVE_MINUTES,
                )
                for i, node in enumerate(nodes)
            }
            return cw.MathExpression(
                expression=f"MAX([{', '.join(per_node)}])",
                using_metrics=per_node,
                label=label,
                period=FIVE_MINUTES,
            )

        redis_cpu = redis("EngineCPUUtilization", "Redis engine CPU %")
        redis_memory = redis("DatabaseMemoryUsagePercentage", "Redis memory used %")
        redis_connections = redis("CurrConnections", "Redis connections")
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Database", left=[db_cpu], right=[db_connections], width=8),
            cw.GraphWidget(title="Database free storage (bytes)", left=[db_free], width=8),
            cw.GraphWidget(
                title="Redis", left=[redis_cpu, redis_memory], right=[redis_connections], width=8
            ),
        )
        self._alarm(
            "DatabaseCpu",
            "Database CPU above 80% for 15 minutes.",
            db_cpu,
            threshold=80,
            comparison=gt,
        )
        self._alarm(
            "DatabaseStorageLow",
            "Database free storage below 10% of its allocation.",
            db_free,
            threshold=stage.db_allocated_storage_gib * GIB * 0.1,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
        )
        self._alarm(
            "RedisCpu",
            "Redis engine CPU above 80% for 15 minutes.",
            redis_cpu,
            threshold=80,
            comparison=gt,
        )
        self._alarm(
            "RedisMemory",
            "Redis memory above 80%: keys may be evicted.",
            redis_memory,
            threshold=80,
            comparison=gt,
        )
