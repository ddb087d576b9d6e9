"""The node's side of the coordinator API: join, assignment, heartbeats, usage, reachability.

Messages are the shared ``streamr_protocol`` schemas, so the node and the coordinator cannot
drift apart. Errors from the coordinator surface as ``CoordinatorError`` carrying its message.
"""

from __future__ import annotations

from typing import Any

import httpx

from streamr_protocol.nodes import (
    Assignment,
    Heartbeat,
    HeartbeatAck,
    NodeCredentials,
    NodeRegistration,
    Reachability,
    ReachabilityCheck,
)
from streamr_protocol.usage import UsageAck, UsageReport


class CoordinatorError(Exception):
    """The coordinator refused a request; ``str()`` is its explanation."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        raise CoordinatorError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        raise CoordinatorError(
            response.status_code, "http_error", f"HTTP {response.status_code} from coordinator"
        ) from None


class CoordinatorClient:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, token: str | None, body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self._http.post(path, json=body, headers=headers)
        _raise_for_error(response)
        return response.json() if response.content else None

    async def _get(self, path: str, token: str) -> Any:
        response = await self._http.get(path, headers={"Authorization": f"Bearer {token}"})
        _raise_for_error(response)
        return response.json()

    async def create_account(self, email: str, password: str, display_name: str) -> None:
        """A friend's account: it owns the node and is paid for what the node delivers."""
        body = {"email": email, "password": password, "display_name": display_name}
        await self._post("/api/v1/auth/register", None, {**body, "role": "friend"})

    async def login(self, email: str, password: str) -> str:
        """An access token for the friend's account."""
        data = await self._post("/api/v1/auth/login", None, {"email": email, "password": password})
        return str(data["access_token"])

    async def register(self, access_token: str, registration: NodeRegistration) -> NodeCredentials:
        data = await self._post(
            "/api/v1/nodes/register", access_token, registration.model_dump(mode="json")
        )
        return NodeCredentials.model_validate(data)

    async def heartbeat(self, node_id: str, node_token: str, beat: Heartbeat) -> HeartbeatAck:
        data = await self._post(
            f"/api/v1/nodes/{node_id}/heartbeat", node_token, beat.model_dump(mode="json")
        )
        return HeartbeatAck.model_validate(data)

    async def deregister(self, node_id: str, node_token: str) -> None:
        response = await self._http.delete(
            f"/api/v1/nodes/{node_id}", headers={"Authorization": f"Bearer {node_token}"}
        )
        _raise_for_error(response)

    async def assignment(self, node_id: str, node_token: str) -> Assignment:
        data = await self._get(f"/api/v1/nodes/{node_id}/assignment", node_token)
        return Assignment.model_validate(data)

    async def report_usage(self, node_id: str, node_token: str, report: UsageReport) -> UsageAck:
        data = await self._post(
            f"/api/v1/nodes/{node_id}/usage", node_token, report.model_dump(mode="json")
        )
        return UsageAck.model_validate(data)

    async def check_reachability(
        self, node_id: str, node_token: str, public_url: str | None
    ) -> Reachability:
        body = ReachabilityCheck(public_url=public_url).model_dump(mode="json", exclude_none=True)
        data = await self._post(f"/api/v1/nodes/{node_id}/reachability", node_token, body)
        return Reachability.model_validate(data)

    async def leave(self, node_id: str, node_token: str) -> None:
        """Leave routing now (shutting down) while staying registered for the next run."""
        response = await self._http.delete(
            f"/api/v1/nodes/{node_id}/presence",
            headers={"Authorization": f"Bearer {node_token}"},
        )
        _raise_for_error(response)

    async def node(self, node_id: str, node_token: str) -> dict[str, Any]:
        return dict(await self._get(f"/api/v1/nodes/{node_id}", node_token))

    async def usage_totals(self, node_id: str, node_token: str) -> dict[str, Any]:
        return dict(await self._get(f"/api/v1/nodes/{node_id}/usage", node_token))

    async def earnings(self, node_id: str, node_token: str) -> dict[str, Any]:
        """Balance, earned, paid out, the stream's budget and the terms (GET .../earnings)."""
        return dict(await self._get(f"/api/v1/nodes/{node_id}/earnings", node_token))

    async def standing(self, node_id: str, node_token: str) -> dict[str, Any]:
        """Trust, pay factor and any warning for this node (GET .../standing)."""
        return dict(await self._get(f"/api/v1/nodes/{node_id}/standing", node_token))
