"""Messages between the ingest (nginx-rtmp and its origin watcher) and the coordinator.

The coordinator's ingest routes and the ingest's clients both import these, so a segment report
or a sync cannot mean one thing on one side and another on the other. The shared secret lives in
one file both sides agree on (see ``read_or_create_secret``) unless ``STREAMR_INGEST_SECRET`` is
set on both.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path

from pydantic import BaseModel, Field

from .messages import Message

SECRET_HEADER = "X-Streamr-Ingest-Secret"  # noqa: S105 - a header name
RELAY_HEADER = "X-Streamr-Relay-Base"
SECRET_FILE_NAME = "ingest-secret"  # noqa: S105 - a file name, in the shared data directory

HOOK_AUTHORIZE_PATH = "/api/v1/ingest/hooks/authorize"
HOOK_PUBLISH_PATH = "/api/v1/ingest/hooks/publish"
HOOK_PUBLISH_DONE_PATH = "/api/v1/ingest/hooks/publish-done"
SEGMENTS_PATH = "/api/v1/ingest/segments"
SYNC_PATH = "/api/v1/ingest/sync"

STREAM_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
SEGMENT_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
MAX_SEGMENTS_PER_REPORT = 500

# The secret ends up inside nginx.conf (a quoted header value) and in HTTP headers, so only
# characters that need no escaping in either are accepted.
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]{32,512}$")
SECRET_RULE = "32 to 512 characters from A-Z a-z 0-9 . _ ~ + / = -"  # noqa: S105 - a rule


class SegmentReport(Message):
    """One finished HLS segment as the origin watcher saw it on disk."""

    stream: str = Field(pattern=STREAM_NAME_PATTERN, description="Public stream name")
    sequence: int = Field(ge=0, le=2**62, description="HLS media sequence number")
    name: str = Field(pattern=SEGMENT_NAME_PATTERN, description="File name, e.g. 12.ts")
    duration_ms: int = Field(ge=0, le=600_000, description="EXTINF duration, milliseconds")
    size: int = Field(ge=0, le=2**40, description="Bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lowercase hex")
    discontinuity: bool = Field(default=False, description="EXT-X-DISCONTINUITY before it")


class SegmentBatch(Message):
    segments: list[SegmentReport] = Field(min_length=1, max_length=MAX_SEGMENTS_PER_REPORT)


class SegmentBatchResult(BaseModel):
    accepted: int
    known: int


class PublishingNow(Message):
    """The public names the ingest is publishing right now (nginx-rtmp's HLS application)."""

    publishing: list[str] = Field(max_length=10_000)
    complete: bool = Field(
        default=False,
        description="True when nginx has just started or stopped: nothing is publishing that is "
        "not listed, so the coordinator applies the list even to states changed moments ago",
    )


class SyncResult(BaseModel):
    changed: list[str]


class SecretError(ValueError):
    """The shared ingest secret is missing, unreadable or malformed."""


def check_secret(secret: str, source: str) -> str:
    if not SECRET_PATTERN.fullmatch(secret):
        raise SecretError(
            f"the ingest secret from {source} is not acceptable: use {SECRET_RULE} "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return secret


def read_or_create_secret(path: Path, wait_s: float = 2.0) -> str:
    """The secret stored in ``path``; created (mode 0600) when no one has written it yet.

    Format: one line holding ``secrets.token_urlsafe(32)`` (43 characters), then a newline;
    readers strip surrounding whitespace. Creation is atomic — the value is written to a private
    temporary file and hard-linked into place, which fails if the file appeared meanwhile — so a
    coordinator and an ingest starting at the same moment end up with the same secret. A file
    that exists but is still empty (a writer that creates, then writes) is re-read for up to
    ``wait_s`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
            with contextlib.suppress(FileExistsError):  # the other side was first; theirs wins
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read the ingest secret {path}: {exc.strerror}") from exc
        if secret or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return check_secret(secret, str(path))
