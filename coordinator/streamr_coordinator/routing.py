"""The route class every router uses: the first line of a handler's docstring becomes its
summary in /docs, so the API reference reads as sentences instead of function names."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute


class DocumentedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        doc = inspect.getdoc(endpoint)
        if kwargs.get("summary") is None and doc:
            first = doc.split("\n\n", 1)[0].replace("\n", " ")
            kwargs["summary"] = re.split(r"[.;:] ", first, maxsplit=1)[0].rstrip(".")
        super().__init__(path, endpoint, **kwargs)
