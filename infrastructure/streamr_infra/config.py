"""What differs between the stages, typed and validated.

``config/stages.toml`` has a ``[defaults]`` table and one table per stage (beta, gamma, prod);
each stage is the defaults overlaid with its own table (nested tables are merged key by key).
Every value is checked here, before CDK sees it, so that a wrong size or a prod stage without
backups is one readable line at ``cdk synth``, not a failed CloudFormation deployment.

Values that only stand in for the operator's own (``example.com`` addresses, AWS's documentation
account) synthesize fine, so the app can be built and tested offline, but the deploy scripts
refuse a stage that still has any (``placeholders``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STAGES = ("beta", "gamma", "prod")
StageName = Literal["beta", "gamma", "prod"]
# An operator may keep their own stage file outside the repository: STREAMR_INFRA_CONFIG.
DEFAULT_CONFIG = Path(
    os.environ.get("STREAMR_INFRA_CONFIG")
    or Path(__file__).resolve().parents[1] / "config" / "stages.toml"
)

# Fargate's valid CPU units and, for each, the memory sizes (MiB) it can have.
FARGATE_MEMORY: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
}
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
PLACEHOLDER_ACCOUNT = "123456789012"  # AWS's documentation account
PLACEHOLDER_DOMAINS = ("example.com", "example.net", "example.org")

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_DB_INSTANCE = re.compile(r"^(t4g|t3|m6g|m7g|m6i|m7i|r6g|r7g|r6i|r7i)\.[a-z0-9]+$")
_CACHE_NODE = re.compile(r"^cache\.(t4g|t3|m6g|m7g|r6g|r7g)\.[a-z0-9]+$")


class ConfigError(Exception):
    """The stage configuration is wrong; the message names the setting and what is expected."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSize(Model):
    """A Fargate task's size."""

    cpu: int = Field(description="CPU units (1024 = one vCPU)")
    memory_mib: int

    @model_validator(mode="after")
    def _fargate_combination(self) -> TaskSize:
        if self.cpu not in FARGATE_MEMORY:
            raise ValueError(
                f"cpu {self.cpu} is not a Fargate size; use one of {list(FARGATE_MEMORY)}"
            )
        allowed = FARGATE_MEMORY[self.cpu]
        if self.memory_mib not in allowed:
            raise ValueError(
                f"cpu {self.cpu} takes memory_mib from {allowed.start} to {allowed.stop - 1} "
                f"in steps of {allowed.step}, not {self.memory_mib}"
            )
        return self


class StageConfig(Model):
    name: StageName
    account: str | None = Field(
        default=None, description="AWS account; unset means the one the credentials belong to"
    )
    region: str
    availability_zones: tuple[str, ...] = Field(min_length=2, max_length=3)
    vpc_cidr: str = "10.0.0.0/16"
    nat_gateways: int = Field(ge=1, le=3)

    domain_name: str | None = Field(
        default=None, description="Serve the API and HLS origin over HTTPS on this name"
    )
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    certificate_arn: str | None = Field(
        default=None, description="An existing ACM certificate instead of a DNS-validated one"
    )
    rtmp_allowed_cidrs: tuple[str, ...] = Field(
        default=("0.0.0.0/0",), min_length=1, description="Who may connect to RTMP 1935"
    )

    db_instance_type: str
    db_allocated_storage_gib: int = Field(ge=20, le=65536)
    db_max_allocated_storage_gib: int = Field(ge=20, le=65536)
    db_backup_retention_days: int = Field(ge=1, le=35)
    redis_node_type: str
    redis_snapshot_retention_days: int = Field(ge=0, le=35)
    multi_az: bool = Field(description="RDS standby and a Redis replica in another zone")
    deletion_protection: bool

    coordinator: TaskSize
    coordinator_min_tasks: int = Field(ge=2, le=100)
    coordinator_max_tasks: int = Field(ge=2, le=100)
    coordinator_requests_per_task: int = Field(
        ge=10, le=100_000, description="ALB requests per task per minute that add a task"
    )
    worker: TaskSize
    worker_tasks: int = Field(ge=1, le=10)
    ingest: TaskSize

    log_retention_days: int
    alarms: bool = Field(description="Create alarms that notify the SNS topic")
    alarm_emails: tuple[str, ...] = ()

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region such as eu-west-1")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _ACCOUNT.match(value):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id")
        return value

    @field_validator("domain_name", "hosted_zone_name", "hosted_zone_id", "certificate_arn")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        network = ipaddress.ip_network(value)  # a ValueError reads well enough
        if not network.is_private or network.prefixlen > 20:
            raise ValueError(f"{value} must be a private range of /20 or larger, e.g. 10.0.0.0/16")
        return value

    @field_validator("rtmp_allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            if ipaddress.ip_network(cidr).version != 4:
                raise ValueError(f"{cidr} is not an IPv4 range (the VPC is IPv4 only)")
        return value

    @field_validator("db_instance_type")
    @classmethod
    def _db_instance(cls, value: str) -> str:
        if not _DB_INSTANCE.match(value):
            raise ValueError(f"{value!r} is not an RDS instance type such as t4g.micro (no 'db.')")
        return value

    @field_validator("redis_node_type")
    @classmethod
    def _cache_node(cls, value: str) -> str:
        if not _CACHE_NODE.match(value):
            raise ValueError(f"{value!r} is not an ElastiCache node type such as cache.t4g.micro")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs keeps logs for one of {LOG_RETENTION_DAYS} days")
        return value

    @field_validator("alarm_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for email in value:
            if not _EMAIL.match(email):
                raise ValueError(f"{email!r} is not an email address")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        for zone in self.availability_zones:
            if not (zone.startswith(self.region) and len(zone) == len(self.region) + 1):
                raise ValueError(f"availability zone {zone!r} is not in region {self.region}")
        if len(set(self.availability_zones)) != len(self.availability_zones):
            raise ValueError("availability_zones lists a zone twice")
        if self.nat_gateways > len(self.availability_zones):
            raise ValueError(
                f"nat_gateways ({self.nat_gateways}) cannot exceed the availability zones "
                f"({len(self.availability_zones)})"
            )
        if self.db_max_allocated_storage_gib < self.db_allocated_storage_gib:
            raise ValueError("db_max_allocated_storage_gib is below db_allocated_storage_gib")
        if self.coordinator_max_tasks < self.coordinator_min_tasks:
            raise ValueError("coordinator_max_tasks is below coordinator_min_tasks")
        if self.domain_name is not None:
            if not _DOMAIN.match(self.domain_name):
                raise ValueError(f"domain_name {self.domain_name!r} is not a DNS name")
            if self.certificate_arn is None and not (self.hosted_zone_id and self.hosted_zone_name):
                raise ValueError(
                    "domain_name needs either certificate_arn (an ACM certificate for it) or "
                    "hosted_zone_id and hosted_zone_name (a Route 53 zone to validate one in)"
                )
            zone = self.hosted_zone_name
            if zone and not (self.domain_name == zone or self.domain_name.endswith("." + zone)):
                raise ValueError(f"domain_name {self.domain_name} is not inside zone {zone}")
        elif self.certificate_arn or self.hosted_zone_id:
            raise ValueError("certificate_arn and hosted_zone_id only make sense with domain_name")
        if self.alarms and not self.alarm_emails:
            raise ValueError("alarms = true needs at least one address in alarm_emails")
        if self.name == "prod":
            self._production_grade()
        return self

    def _production_grade(self) -> None:
        """Prod holds streamers' and friends' money and data: no shortcuts there."""
        missing = [
            what
            for what, ok in (
                ("deletion_protection = true", self.deletion_protection),
                ("multi_az = true", self.multi_az),
                ("db_backup_retention_days >= 7", self.db_backup_retention_days >= 7),
                ("redis_snapshot_retention_days >= 1", self.redis_snapshot_retention_days >= 1),
                ("alarms = true", self.alarms),
                ("domain_name (HTTPS)", self.domain_name is not None),
                ("account (never deploy prod to whatever account is at hand)", self.account),
                ("nat_gateways >= 2", self.nat_gateways >= 2),
            )
            if not ok
        ]
        if missing:
            raise ValueError("prod must have " + ", ".join(missing))

    # ------------------------------------------------------------ derived

    @property
    def https(self) -> bool:
        return self.domain_name is not None

    @property
    def prefix(self) -> str:
        """Prefix of resource names: one stage's resources never collide with another's."""
        return f"streamr-{self.name}"

    @property
    def rtmp_domain_name(self) -> str | None:
        """The name streamers put in OBS when a Route 53 zone is configured."""
        if self.domain_name is None or self.hosted_zone_id is None:
            return None
        return f"rtmp.{self.domain_name}"

    def placeholders(self) -> list[str]:
        """Settings that still hold stand-in values; a stage with any must not be deployed."""
        found = []
        if self.account == PLACEHOLDER_ACCOUNT:
            found.append(f"account = {self.account} (AWS's documentation example)")
        for name in ("domain_name", "hosted_zone_name"):
            value = getattr(self, name)
            if value and _is_example(value):
                found.append(f"{name} = {value}")
        if self.hosted_zone_id and "EXAMPLE" in self.hosted_zone_id.upper():
            found.append(f"hosted_zone_id = {self.hosted_zone_id}")
        for email in self.alarm_emails:
            if _is_example(email.rsplit("@", 1)[1]):
                found.append(f"alarm_emails has {email}")
        return found


def _is_example(domain: str) -> bool:
    domain = domain.lower()
    return any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_DOMAINS)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_stages(
    document: Mapping[str, Any], source: str = "stages.toml"
) -> dict[str, StageConfig]:
    """Every stage of a parsed stages.toml; a wrong value is one ConfigError naming it."""
    unknown = sorted(set(document) - {"defaults", *STAGES})
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {', '.join(unknown)}; "
            f"expected [defaults] and {', '.join(f'[{s}]' for s in STAGES)}"
        )
    defaults = document.get("defaults", {})
    stages = {}
    for name in STAGES:
        if name not in document:
            raise ConfigError(f"{source}: stage [{name}] is missing")
        values = _merge(defaults, document[name]) | {"name": name}
        try:
            stages[name] = StageConfig.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            where = f"{name}.{field}" if field else name
            raise ConfigError(f"{source}: {where}: {message}") from exc
    return stages


def load_stages(path: Path = DEFAULT_CONFIG) -> dict[str, StageConfig]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_stages(document, str(path))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m streamr_infra.config``: what the deploy scripts ask about a stage."""
    parser = argparse.ArgumentParser(
        prog="python -m streamr_infra.config", description="Check a stage's configuration."
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--for-deploy",
        action="store_true",
        help="also refuse stand-in values (example.com, the documentation account)",
    )
    parser.add_argument("--get", metavar="SETTING", help="print one setting's value and exit")
    args = parser.parse_args(argv)
    try:
        stage = load_stages(args.config)[args.stage]
    except ConfigError as exc:
        sys.exit(f"config: {exc}")
    if args.get:
        if args.get not in StageConfig.model_fields:
            sys.exit(f"config: no setting {args.get!r}")
        value = getattr(stage, args.get)
        print("" if value is None else value)
        return
    if args.for_deploy and stage.placeholders():
        sys.exit(
            f"config: stage {args.stage} still has stand-in values in {args.config}: "
            + "; ".join(stage.placeholders())
            + ". Put your own there before deploying."
        )
    print(f"stage {args.stage}: configuration OK")


if __name__ == "__main__":
    main()
