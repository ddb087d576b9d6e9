"""`cdk synth` works offline, without AWS credentials, and every template passes cfn-lint."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[1]
ROOT = INFRA.parent
CDK = ROOT / "node_modules/.bin/cdk"
# Deliberate, with the reason: the availability zones are configured per stage (config/
# stages.toml) so that every synth is the same with or without credentials (W3010); CDK writes
# DependsOn next to a Ref/GetAtt that already implies it (W3005).
IGNORED = ("W3010", "W3005")


def test_every_template_passes_cfn_lint(synthesized):
    templates = synthesized.templates()
    assert len(templates) == 9, templates  # three stacks for each of three stages
    result = subprocess.run(
        [str(ROOT / ".venv/bin/cfn-lint"), "--ignore-checks", *IGNORED, "--", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cdk_cli_synthesizes_without_aws_credentials(tmp_path):
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: scripts/bootstrap.sh installs the aws-cdk CLI from npm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env |= {
        "HOME": str(tmp_path),  # no ~/.aws either
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            str(CDK),
            "synth",
            "--quiet",
            "--no-notices",
            "--output",
            str(out),
            "-c",
            "stage=gamma",
            "-c",
            "image_tag=abc123",
        ],
        cwd=INFRA,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stacks = sorted(p.name for p in (out / "assembly-gamma").glob("*.template.json"))
    assert len(stacks) == 3, stacks
    assert not (out / "assembly-beta").exists(), "-c stage=gamma builds gamma alone"
    shutil.rmtree(out)
