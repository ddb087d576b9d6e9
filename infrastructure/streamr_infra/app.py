"""Build the CDK app: per stage, a CDK Stage ("beta", "gamma", "prod") holding the foundation,
application and monitoring stacks (``cdk deploy 'beta/*'``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from .application import ApplicationStack
from .config import StageConfig
from .foundation import FoundationStack
from .monitoring import MonitoringStack

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


class StreamrStage(cdk.Stage):
    def __init__(self, scope: cdk.App, stage: StageConfig, image_tag: str) -> None:
        env = cdk.Environment(account=stage.account, region=stage.region)
        super().__init__(scope, stage.name, env=env)
        tags = {"project": "streamrp2p", "stage": stage.name}
        self.foundation = FoundationStack(
            self,
            "Foundation",
            stage=stage,
            stack_name=f"{stage.prefix}-foundation",
            description=f"StreamrP2P {stage.name}: network, data stores, secrets, images",
            termination_protection=stage.deletion_protection,
            tags=tags,
        )
        self.application = ApplicationStack(
            self,
            "Application",
            stage=stage,
            foundation=self.foundation,
            image_tag=image_tag,
            stack_name=f"{stage.prefix}-application",
            description=f"StreamrP2P {stage.name}: coordinator, worker, ingest, load balancers",
            termination_protection=stage.deletion_protection,
            tags=tags,
        )
        self.monitoring = MonitoringStack(
            self,
            "Monitoring",
            stage=stage,
            foundation=self.foundation,
            application=self.application,
            stack_name=f"{stage.prefix}-monitoring",
            description=f"StreamrP2P {stage.name}: dashboard, alarms, metrics collector",
            tags=tags,
        )


def feature_flags() -> dict[str, Any]:
    """cdk.json's context: the same feature flags whether the CLI or a test builds the app."""
    return json.loads(CDK_JSON.read_text())["context"]


def build_app(
    stages: Iterable[StageConfig],
    image_tag: str,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[cdk.App, dict[str, StreamrStage]]:
    app = cdk.App(outdir=outdir, context={**feature_flags(), **(context or {})})
    built = {stage.name: StreamrStage(app, stage, image_tag) for stage in stages}
    return app, built
