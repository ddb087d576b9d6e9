"""Signed segment attestation: the one check that nodes, probes, tests and viewers all make.

The coordinator signs every segment's metadata with Ed25519 as soon as the origin watcher
reports it. The signed message is a fixed, line-based text (not JSON, whose serialisation varies
between languages), so the browser can rebuild the same bytes and verify with WebCrypto:

    streamr-segment-v1
    <stream name>
    <sequence>
    <segment file name>
    <duration in ms>
    <size in bytes>
    <sha256, lowercase hex>

Anyone holding the coordinator's public key (``GET /api/v1/attestation/key``) can then tell a
genuine segment from an altered one without trusting whoever relayed it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field

FORMAT = "streamr-segment-v1"


class SegmentEntry(BaseModel):
    """One entry of a stream's signed segment index."""

    sequence: int = Field(ge=0)
    name: str = Field(min_length=1, max_length=128)
    duration_ms: int = Field(ge=0, le=600_000)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    discontinuity: bool = False
    signature: str = Field(description="Ed25519 over the canonical message, base64url")


class SegmentIndex(BaseModel):
    stream: str
    key_id: str
    format: str = FORMAT
    segments: list[SegmentEntry]


class AttestationKey(BaseModel):
    key_id: str
    algorithm: str = "Ed25519"
    format: str = FORMAT
    public_key: str = Field(description="Raw 32-byte public key, base64url without padding")


class AttestationError(Exception):
    """A segment or its index entry is not what the coordinator signed."""


def canonical_message(
    stream: str, sequence: int, name: str, duration_ms: int, size: int, sha256: str
) -> bytes:
    return f"{FORMAT}\n{stream}\n{sequence}\n{name}\n{duration_ms}\n{size}\n{sha256}".encode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key_from(key: AttestationKey | str | bytes) -> Ed25519PublicKey:
    if isinstance(key, AttestationKey):
        key = key.public_key
    raw = b64url_decode(key) if isinstance(key, str) else key
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_entry(public_key: Ed25519PublicKey, stream: str, entry: SegmentEntry) -> None:
    """Raise AttestationError unless the coordinator signed exactly this entry."""
    message = canonical_message(
        stream, entry.sequence, entry.name, entry.duration_ms, entry.size, entry.sha256
    )
    try:
        public_key.verify(b64url_decode(entry.signature), message)
    except (InvalidSignature, ValueError) as exc:
        raise AttestationError(
            f"segment {entry.sequence} of {stream}: the index entry's signature is not valid"
        ) from exc


def verify_segment(
    public_key: Ed25519PublicKey, stream: str, entry: SegmentEntry, data: bytes
) -> None:
    """Raise AttestationError unless ``data`` is the segment the coordinator signed."""
    verify_entry(public_key, stream, entry)
    if len(data) != entry.size:
        raise AttestationError(
            f"segment {entry.sequence} of {stream}: {len(data)} bytes, signed size {entry.size}"
        )
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry.sha256):
        raise AttestationError(f"segment {entry.sequence} of {stream}: content does not match")
