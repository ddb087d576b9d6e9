from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class NodeLoad(BaseModel):
    connections: int
    egress_bps: int
    egress_cap_bps: int | None
    last_heartbeat_at: datetime


class NodeOut(BaseModel):
    """A node as its owner, its stream's owner and admins see it."""

    id: str
    stream: str
    name: str
    owner_id: str
    public_url: str | None
    version: str | None
    registered_at: datetime
    last_seen_at: datetime | None
    online: bool
    load: NodeLoad | None
    reachable: bool | None = Field(
        description="Whether the coordinator reached the node's public URL at its last check; "
        "null before the first check"
    )
    reachability_status: str | None
    reachability_checked_at: datetime | None


class StreamNodes(BaseModel):
    """Anyone sees the counts; ``nodes`` lists only what the caller may see in detail."""

    stream: str
    registered: int
    online: int
    nodes: list[NodeOut] | None = None
