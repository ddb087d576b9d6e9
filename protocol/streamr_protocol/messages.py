"""The base of every request message, on both sides of the wire."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError


class Message(BaseModel):
    """Unknown fields are refused, whitespace is trimmed, and text never holds a NUL.

    PostgreSQL text cannot hold U+0000 (an insert would fail) while SQLite would store it;
    refusing it here gives one answer, naming the field, whatever the database.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise PydanticCustomError(
                "nul_character", "must not contain the NUL character (U+0000)"
            )
        return value
