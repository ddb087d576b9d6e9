"""The CDK app's entry point (cdk.json runs it): every stage, or the one named with
``-c stage=NAME``; images tagged ``-c image_tag=TAG`` (default: the checked-out commit, which is
how scripts/deploy-images.sh tags what it pushes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

import aws_cdk as cdk  # noqa: E402
from streamr_infra.app import StreamrStage, feature_flags  # noqa: E402
from streamr_infra.config import STAGES, ConfigError, load_stages  # noqa: E402


def checked_out_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=HERE, capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def main() -> None:
    app = cdk.App(context=feature_flags())
    try:
        stages = load_stages()
    except ConfigError as exc:
        sys.exit(f"streamr infrastructure: {exc}")
    only = app.node.try_get_context("stage")
    if only is not None and only not in STAGES:
        sys.exit(f"streamr infrastructure: unknown stage {only!r}; use one of {', '.join(STAGES)}")
    image_tag = app.node.try_get_context("image_tag") or checked_out_commit()
    for name in [only] if only else STAGES:
        StreamrStage(app, stages[name], image_tag)
    app.synth()


if __name__ == "__main__":
    main()
