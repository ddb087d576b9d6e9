"""Write docs/api.md from the coordinator's OpenAPI schema, so the reference cannot drift.

.venv/bin/python scripts/generate_api_reference.py          # rewrite docs/api.md
.venv/bin/python scripts/generate_api_reference.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streamr_coordinator.main import create_app

TARGET = Path(__file__).resolve().parent.parent / "docs" / "api.md"

HEADER = """# Coordinator API reference

Generated from the OpenAPI schema by `scripts/generate_api_reference.py`; do not edit by hand.
A running coordinator serves the same schema interactively at `/docs` and as JSON at
`/openapi.json`.

Authentication is `Authorization: Bearer <token>`: an account's access token (from
`/api/v1/auth/login` or `/register`), for a node's own routes its node token (`snt_…`), and
for a viewer session's own routes that session's token (also accepted as `X-Streamr-Session`).
Every error, 4xx or 5xx, has one shape:

```json
{"error": {"status": 409, "code": "invalid_transition", "message": "what to fix", "details": {}}}
```
"""


def _type(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    return str(schema.get("type", "any"))


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("pattern", "pattern"),
        ("default", "default"),
    ):
        if key in schema:
            value = f"`{schema[key]}`" if key in ("pattern", "default") else schema[key]
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def _model_table(name: str, components: dict[str, Any]) -> list[str]:
    schema = components.get(name, {})
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    lines = ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
    for field, spec in properties.items():
        notes = "; ".join(x for x in (spec.get("description", ""), _constraints(spec)) if x)
        lines.append(
            f"| `{field}` | {_type(spec, components)} | {'yes' if field in required else 'no'} "
            f"| {notes} |"
        )
    return lines


def render() -> str:
    spec = create_app().openapi()
    components = spec.get("components", {}).get("schemas", {})
    out = [HEADER]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["service"])[0]
            by_tag.setdefault(tag, []).append((method.upper(), path, op))
    for tag, operations in by_tag.items():
        out.append(f"## {tag.title()}\n")
        for method, path, op in operations:
            out.append(f"### `{method} {path}`\n")
            description = (op.get("description") or "").strip()
            if description:
                out.append(description + "\n")
            params = [p for p in op.get("parameters", []) if p.get("in") == "query"]
            if params:
                out.append(
                    "Query: "
                    + ", ".join(
                        f"`{p['name']}` ({_type(p.get('schema', {}), components)}"
                        + (
                            f"; {_constraints(p.get('schema', {}))}"
                            if _constraints(p.get("schema", {}))
                            else ""
                        )
                        + ")"
                        for p in params
                    )
                    + "\n"
                )
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                model = _type(body["schema"], components)
                out.append(f"Body: `{model}`\n")
                table = _model_table(model, components)
                if table:
                    out.append("\n".join(table) + "\n")
            codes = sorted(op.get("responses", {}))
            success = [c for c in codes if c.startswith("2")]
            out.append(f"Success: {', '.join(success)}\n")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            sys.exit("docs/api.md is stale: run .venv/bin/python scripts/generate_api_reference.py")
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
