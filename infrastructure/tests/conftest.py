"""Synthesize every stage once per test session; tests look at the templates.

CDK synthesis goes through jsii (a Node.js process), which is slow, so the whole app (beta,
gamma, prod) is built once, into a temporary cdk.out, and each test reads what it needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# jsii warns on every start that this machine's Node.js is past its end of life; the warning
# is about the toolchain, not the templates, and drowns the test output. jsii silences it only
# for the major versions the variable lists (a "1" silenced nothing), so it lists them all.
os.environ.setdefault(
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", ",".join(str(v) for v in range(12, 40))
)

from aws_cdk.assertions import Template
from infra_helpers import IMAGE_TAG
from streamr_infra.app import StreamrStage, build_app
from streamr_infra.config import StageConfig, load_stages

STACKS = ("Foundation", "Application", "Monitoring")


@dataclass
class Synthesized:
    stages: dict[str, StageConfig]
    built: dict[str, StreamrStage]
    outdir: Path
    _templates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def json(self, stage: str, stack: str) -> dict[str, Any]:
        """The synthesized template of ``stage``'s ``stack`` (Foundation, Application,
        Monitoring), as written to cdk.out."""
        key = (stage, stack)
        if key not in self._templates:
            cdk_stack = getattr(self.built[stage], stack.lower())
            path = self.outdir / f"assembly-{stage}" / cdk_stack.template_file
            self._templates[key] = json.loads(path.read_text())
        return self._templates[key]

    def template(self, stage: str, stack: str) -> Template:
        return Template.from_json(self.json(stage, stack))

    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("assembly-*/*.template.json"))


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    stages = load_stages()
    app, built = build_app(stages.values(), IMAGE_TAG, outdir=str(outdir))
    app.synth()
    return Synthesized(stages, built, outdir)
