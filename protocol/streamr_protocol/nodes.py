"""Messages between a friend node and the coordinator: registration and heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, Field
from pydantic_core import PydanticCustomError

from .attestation import AttestationKey
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
        default="node",
        min_length=1,
        max_length=64,
        description="Label shown to the streamer, and to viewers on the watch page",
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


class Upstream(BaseModel):
    """Where a node pulls the stream from: the origin, or a parent node (nodes form a tree)."""

    kind: Literal["origin", "node"]
    base_url: str = Field(description="Prefix of the HLS paths, e.g. http://origin:8080")
    node_id: str | None = None


class Assignment(BaseModel):
    """What a node should relay and from where; nodes ask again every ``refresh_s``."""

    node_id: str
    stream: str
    stream_state: str
    live: bool
    playlist_path: str = Field(description="Append to an upstream's base_url")
    upstream: Upstream
    origin: Upstream = Field(description="Fallback when the upstream fails or sends bad bytes")
    attestation_key: AttestationKey = Field(
        description="Verifies segment signatures and viewer session tokens"
    )
    refresh_s: float
    report_interval_s: float


ReachabilityStatus = Literal[
    "reachable",
    "no_public_url",
    "private_address",
    "refused",
    "timeout",
    "bad_response",
    "wrong_node",
]


class ReachabilityCheck(Message):
    """A node asks the coordinator to try its public URL from outside."""

    public_url: PublicUrl | None = Field(
        default=None, description="URL to check; the last one the node reported when absent"
    )


class Reachability(BaseModel):
    """The coordinator's verdict, with what to do about it in plain words."""

    reachable: bool
    status: ReachabilityStatus
    checked_url: str | None
    detail: str
    advice: list[str]
    checked_at: datetime
