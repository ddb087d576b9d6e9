"""A browser's view of the coordinator for tests of the dashboards' pages.

It keeps its own cookies and clears the shared test client's jar after every request, so a
dashboard session never leaks into other tests that share the client (a cookie would quietly
authenticate their "anonymous" calls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from .conftest import PASSWORD

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    """A browser's view of the coordinator: its own cookies, no redirects followed."""

    client: TestClient
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.cookies:
            jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            headers["Cookie"] = jar.encode("latin-1")  # as sent: bytes, not always ASCII
        try:
            response = self.client.request(
                method, url, headers=headers, follow_redirects=False, **kwargs
            )
        finally:
            self.client.cookies.clear()
        for raw in response.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in raw or value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def login(self, email: str, password: str = PASSWORD, **extra: str) -> Any:
        form = self.get("/login")
        assert form.status_code == 200, form.text
        token = CSRF_INPUT.search(form.text)
        assert token is not None
        data = {"email": email, "password": password, "csrf_token": token.group(1), **extra}
        return self.post("/login", data=data)

    def csrf(self) -> str:
        page = self.get("/dashboard/friend")
        assert page.status_code == 200, page.text
        found = CSRF_INPUT.search(page.text)
        assert found is not None
        return found.group(1)
