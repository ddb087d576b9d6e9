from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class LeaseOut(BaseModel):
    holder: str | None = Field(description="hostname:pid:random of the worker that took it last")
    fence: int = Field(description="Grows by one at every acquisition")
    acquired_at: datetime | None = Field(description="When the latest run started")
    expires_at: datetime
    held: bool = Field(description="A worker holds it now (a run is going on)")


class RunOut(BaseModel):
    id: int
    holder: str
    fence: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: str = Field(
        description="ok, error, abandoned (stopped or lease lost mid-run), running, or lost "
        "(left running by a worker that died: its lease moved on)"
    )
    error: str | None
    details: dict[str, Any] | None


class JobOut(BaseModel):
    name: str
    in_catalog: bool = Field(description="This coordinator's catalog has the job")
    interval_s: float | None
    lease_s: float | None
    lease: LeaseOut | None = Field(description="None until a worker first ran the job")
    last_ok_at: datetime | None
    last_error_at: datetime | None
    runs: list[RunOut] = Field(description="The latest runs, newest first")


class JobsOut(BaseModel):
    now: datetime
    jobs: list[JobOut]
