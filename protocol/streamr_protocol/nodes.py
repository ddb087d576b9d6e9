"""Messages between a friend node and the coordinator: registration and heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, Field
from pydantic_core import PydanticCustomError

from .messages import Message

# Bounds that keep a single message small and obviously sane; anything outside them is a bug
# or an attack on the accounting, and is refused with a message instead of being stored.
MAX_CONNECTIONS = 1_000_000
MAX_BITS_PER_SECOND = 100_000_000_000  # 100 Gbit/s, well beyond any home uplink
MAX_URL_LENGTH = 2083  # what browsers accept, and what the coordinator stores


def _short_enough(url: AnyHttpUrl) -> AnyHttpUrl:
    # Checked after parsing: percent-encoding can make a URL several times longer than typed.
    if len(str(url)) > MAX_URL_LENGTH:
        raise PydanticCustomError(
            "url_too_long", f"URL should have at most {MAX_URL_LENGTH} characters once encoded"
        )
    return url


PublicUrl = Annotated[AnyHttpUrl, AfterValidator(_short_enough)]


class NodeRegistration(Message):
    """A friend asks to attach a node to a stream, proving the streamer invited them."""

    invite_code: str = Field(min_length=8, max_length=128, description="Code from the streamer")
    name: str = Field(
        default="node", min_length=1, max_length=64, description="Label shown to the streamer"
    )
    public_url: PublicUrl | None = Field(
        default=None, description="Where viewers reach this node, if already known"
    )
    version: str | None = Field(default=None, max_length=64)


class NodeCredentials(BaseModel):
    """Answer to a registration. The token is shown this once; the coordinator keeps a hash."""

    node_id: str
    node_token: str
    stream: str
    heartbeat_interval_s: float
    presence_ttl_s: float


class Heartbeat(Message):
    """What a node reports every few seconds. Timestamps are never taken from the node."""

    connections: int = Field(ge=0, le=MAX_CONNECTIONS, description="Open viewer connections")
    egress_bps: int = Field(ge=0, le=MAX_BITS_PER_SECOND, description="Current egress, bit/s")
    egress_cap_bps: int | None = Field(
        default=None, ge=0, le=MAX_BITS_PER_SECOND, description="Configured egress cap, bit/s"
    )
    version: str = Field(min_length=1, max_length=64, description="Node software version")
    public_url: PublicUrl | None = Field(default=None, description="Where viewers reach it")


class HeartbeatAck(BaseModel):
    """The coordinator's answer: when to beat next and how long presence lasts without one."""

    node_id: str
    received_at: datetime
    next_heartbeat_s: float
    presence_ttl_s: float
