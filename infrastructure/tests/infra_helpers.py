"""Helpers that read synthesized CloudFormation templates."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

IMAGE_TAG = "0123456789ab"  # the image tag the tests synthesize with


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of every resource of one CloudFormation type."""
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def logical_id(construct: Any) -> str:
    """The logical id CloudFormation knows ``construct`` (or its main resource) by."""
    resource = construct.node.default_child or construct
    return cdk.Stack.of(construct).get_logical_id(resource)


def load_lambda(name: str) -> Any:
    """A Lambda handler module (streamr_infra/lambdas/<name>/index.py), imported by path: every
    function's module is called ``index``, as the Lambda runtime expects."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "streamr_infra" / "lambdas" / name / "index.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
