"""Stage configuration: typed, validated, one readable line per mistake, and stand-in values
that synthesize but cannot be deployed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from streamr_infra.config import DEFAULT_CONFIG, ConfigError, load_stages, parse_stages

INFRA = Path(__file__).resolve().parents[1]


def document() -> dict:
    return tomllib.loads(DEFAULT_CONFIG.read_text())


def with_stage(stage: str, **values) -> dict:
    doc = document()
    doc[stage] = doc[stage] | values
    return doc


def test_the_committed_stages_load_and_differ_as_intended():
    stages = load_stages()
    beta, gamma, prod = stages["beta"], stages["gamma"], stages["prod"]
    assert [s.name for s in stages.values()] == ["beta", "gamma", "prod"]
    assert (beta.alarms, gamma.alarms, prod.alarms) == (False, True, True)
    assert (beta.deletion_protection, gamma.deletion_protection, prod.deletion_protection) == (
        False,
        True,
        True,
    )
    assert (beta.multi_az, prod.multi_az) == (False, True)
    assert beta.db_backup_retention_days < gamma.db_backup_retention_days
    assert gamma.db_backup_retention_days < prod.db_backup_retention_days
    assert (beta.https, prod.https) == (False, True)
    assert len({s.vpc_cidr for s in stages.values()}) == 3, "stages never overlap (peering)"
    assert beta.placeholders() == []
    assert prod.placeholders(), "prod ships with stand-ins that must be replaced"


@pytest.mark.parametrize(
    ("stage", "values", "message"),
    [
        ("prod", {"deletion_protection": False}, "prod must have deletion_protection = true"),
        ("prod", {"multi_az": False}, "multi_az = true"),
        ("prod", {"db_backup_retention_days": 3}, "db_backup_retention_days >= 7"),
        (
            "prod",
            {"domain_name": "", "hosted_zone_id": "", "hosted_zone_name": ""},
            "domain_name (HTTPS)",
        ),
        ("beta", {"coordinator": {"cpu": 256, "memory_mib": 4096}}, "cpu 256 takes memory_mib"),
        ("beta", {"coordinator": {"cpu": 300, "memory_mib": 512}}, "not a Fargate size"),
        ("beta", {"availability_zones": ["us-east-1a", "us-east-1b"]}, "not in region eu-west-1"),
        ("beta", {"nat_gateways": 3}, "cannot exceed the availability zones"),
        ("beta", {"alarms": True}, "needs at least one address in alarm_emails"),
        ("beta", {"domain_name": "api.example.org"}, "needs either certificate_arn"),
        ("beta", {"log_retention_days": 10}, "CloudWatch Logs keeps logs"),
        ("beta", {"coordinator_min_tasks": 1}, "coordinator_min_tasks"),
        ("beta", {"db_instance_type": "db.t4g.micro"}, "no 'db.'"),
        ("beta", {"vpc_cidr": "8.8.0.0/16"}, "must be a private range"),
        ("beta", {"surprise": 1}, "beta.surprise"),
    ],
)
def test_mistakes_are_one_line_naming_the_setting(stage, values, message):
    with pytest.raises(ConfigError) as caught:
        parse_stages(with_stage(stage, **values))
    text = str(caught.value)
    assert message in text and "\n" not in text, text
    assert f"{stage}" in text


def test_a_stage_may_not_be_missing():
    doc = document()
    del doc["gamma"]
    with pytest.raises(ConfigError, match=r"stage \[gamma\] is missing"):
        parse_stages(doc)


def test_deploy_check_refuses_stand_in_values(tmp_path):
    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "streamr_infra.config", *args],
            cwd=INFRA,
            capture_output=True,
            text=True,
        )

    refused = check("prod", "--for-deploy")
    assert refused.returncode != 0
    assert "account = 123456789012" in refused.stderr
    assert "domain_name = streamr.example.com" in refused.stderr
    assert check("beta", "--for-deploy").returncode == 0
    assert check("gamma", "--for-deploy").returncode != 0, "gamma's alarm address is a stand-in"
    assert check("prod", "--get", "region").stdout.strip() == "eu-west-1"

    own = tmp_path / "stages.toml"
    own.write_text(
        DEFAULT_CONFIG.read_text()
        .replace("123456789012", "210987654321")
        .replace('"streamr.example.com"', '"live.streamr.test"')
        .replace('hosted_zone_name = "example.com"', 'hosted_zone_name = "streamr.test"')
        .replace("Z0EXAMPLE00000000000", "Z0123456789ABCDEFGHIJ")
        .replace("streamr-oncall@example.com", "oncall@streamr.test")
    )
    assert check("prod", "--for-deploy", "--config", str(own)).returncode == 0
