"""How routes describe themselves in /docs: summaries from docstrings, hand-read bodies."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel


class DocumentedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        doc = inspect.getdoc(endpoint)
        if kwargs.get("summary") is None and doc:
            first = doc.split("\n\n", 1)[0].replace("\n", " ")
            kwargs["summary"] = re.split(r"[.;:] ", first, maxsplit=1)[0].rstrip(".")
        super().__init__(path, endpoint, **kwargs)


def publish_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add request models to the OpenAPI components that a route reads by hand (the heartbeat),
    so /docs and the API reference still describe its body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            components.setdefault(
                model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
            )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
