from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from ..schemas import RequestModel
from .passwords import MAX_LENGTH, MIN_LENGTH


class RegisterRequest(RequestModel):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    display_name: str = Field(min_length=1, max_length=64)
    role: Literal["streamer", "friend"] = Field(
        default="streamer", description="streamer owns streams; friend runs nodes"
    )


class LoginRequest(RequestModel):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(RefreshRequest):
    everywhere: bool = Field(default=False, description="Also end every other session")


class AccountOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str
    created_at: datetime


class TokenPair(BaseModel):
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    account: AccountOut
