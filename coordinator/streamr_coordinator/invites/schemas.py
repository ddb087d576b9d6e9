from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..schemas import RequestModel

MAX_LIFETIME_S = 90 * 86_400


class InviteCreate(RequestModel):
    label: str = Field(
        default="", max_length=64, description="Who it is for, to recognise it later"
    )
    expires_in_s: int = Field(default=7 * 86_400, ge=60, le=MAX_LIFETIME_S)
    max_uses: int = Field(default=1, ge=1, le=1000, description="How many nodes may join with it")


class InviteOut(BaseModel):
    id: str
    stream: str
    label: str
    created_at: datetime
    expires_at: datetime
    max_uses: int
    uses: int
    state: Literal["active", "expired", "revoked", "used_up"]


class InviteCreated(InviteOut):
    """Returned once: the code is not stored, so it cannot be shown again."""

    code: str
    join_command: str
