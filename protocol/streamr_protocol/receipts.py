"""Viewer receipts: the watch page's own account of who delivered which segment, and how well.

They are one side of the bandwidth proof (the node's usage reports are the other) and the
routing's best evidence about a node: a segment that failed its signed hash, an error or a
stall, reported by the viewer it happened to. The page sends them in batches; each batch has an
id chosen before it is first sent and unique per viewer session, so a batch resent after a
network fault is stored once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from .messages import Message

MAX_RECEIPTS_PER_BATCH = 100
MAX_SEGMENT_BYTES = 1_000_000_000  # a 2-second segment is a few MB; this is far beyond any
MAX_DURATION_MS = 600_000
BATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
SEGMENT_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"

Outcome = Literal["ok", "mismatch", "error", "stall"]
"""ok: the bytes matched the signed index and went to the player; mismatch: they did not (size
or SHA-256), and were thrown away; error: no usable answer (refused, HTTP error, not there);
stall: the answer stopped coming (no first byte, or no progress, in time)."""


class Receipt(Message):
    """One attempt to fetch one segment from one source."""

    source_kind: Literal["node", "origin"]
    node_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The node; absent for the origin"
    )
    segment: str = Field(pattern=SEGMENT_NAME_PATTERN, description="The segment's file name")
    sequence: int = Field(ge=0, le=2**62, description="Its sequence in the signed index")
    bytes: int = Field(ge=0, le=MAX_SEGMENT_BYTES, description="Body bytes received")
    ttfb_ms: int | None = Field(
        default=None, ge=0, le=MAX_DURATION_MS, description="Time to the response; absent if none"
    )
    download_ms: int | None = Field(
        default=None, ge=0, le=MAX_DURATION_MS, description="Time to the last byte"
    )
    outcome: Outcome

    @model_validator(mode="after")
    def _node_id_names_the_node(self) -> Receipt:
        if self.source_kind == "node" and self.node_id is None:
            raise ValueError("node_id is required when source_kind is 'node'")
        if self.source_kind == "origin" and self.node_id is not None:
            raise ValueError("node_id must be absent when source_kind is 'origin'")
        return self


class ReceiptBatch(Message):
    batch_id: str = Field(
        pattern=BATCH_ID_PATTERN, description="Chosen by the page, unique per session; idempotent"
    )
    receipts: list[Receipt] = Field(min_length=1, max_length=MAX_RECEIPTS_PER_BATCH)


class ReceiptAck(BaseModel):
    batch_id: str
    duplicate: bool = Field(description="True when this batch id was already stored")
    receipts: int = Field(description="Receipts stored for this batch id")
