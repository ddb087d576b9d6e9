from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..schemas import RequestModel
from .lifecycle import StreamStatus

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
NAME_RULE = "3-40 characters: lowercase letters, digits and inner hyphens"


class StreamCreate(RequestModel):
    name: str = Field(pattern=NAME_PATTERN, description=f"Public name in URLs ({NAME_RULE})")
    title: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    is_test: bool = Field(default=False, description="Publishing makes it TESTING, not LIVE")


class StreamUpdate(RequestModel):
    title: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    is_test: bool | None = None


class StatusChange(RequestModel):
    status: StreamStatus


class NodeCounts(BaseModel):
    registered: int
    online: int


class StreamOut(BaseModel):
    """What anyone may see about a stream. Never a key."""

    name: str
    title: str
    description: str
    status: StreamStatus
    is_test: bool
    created_at: datetime
    updated_at: datetime
    state_entered_at: dict[str, datetime | None] = Field(
        description="When the stream last entered each state"
    )
    nodes: NodeCounts | None = None


class StreamOwnerOut(StreamOut):
    """The owner's (and admins') view: adds ids, key age and the allowed next states."""

    id: str
    owner_id: str
    key_rotated_at: datetime
    allowed_transitions: list[str]


class ObsSettings(BaseModel):
    server: str
    stream_key: str


class StreamWithKey(BaseModel):
    """Returned once, at creation and at each key rotation: store the key now."""

    stream: StreamOwnerOut
    stream_key: str
    obs: ObsSettings


class StreamList(BaseModel):
    streams: list[StreamOut]
    total: int
    limit: int
    offset: int


class TransitionOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
