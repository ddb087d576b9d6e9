"""The ingest's calls to the coordinator: segment reports and publishing-state syncs.

Every call carries the shared ingest secret in a header (never in a URL). Failures are sorted
into the two kinds callers act on differently: worth retrying (network, 5xx, 429, a refused
secret that an operator may still fix) and refused for good (the answer will not change).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from streamr_protocol.ingest import (
    SECRET_HEADER,
    SEGMENTS_PATH,
    SYNC_PATH,
    PublishingNow,
    SegmentBatch,
    SegmentBatchResult,
    SegmentReport,
    SyncResult,
)

from . import __version__


class CoordinatorUnavailable(Exception):
    """Worth retrying later: the coordinator is unreachable, busy, or refuses our secret."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CoordinatorRefused(Exception):
    """The coordinator answered 4xx to this exact request; resending it changes nothing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class CoordinatorClient:
    def __init__(self, base_url: str, secret: str, timeout_s: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            headers={SECRET_HEADER: secret, "User-Agent": f"streamr-ingest/{__version__}"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def report_segments(self, segments: Sequence[SegmentReport]) -> SegmentBatchResult:
        body = SegmentBatch(segments=list(segments)).model_dump(mode="json")
        return SegmentBatchResult.model_validate(await self._post(SEGMENTS_PATH, body))

    async def sync(self, publishing: Sequence[str], complete: bool = False) -> SyncResult:
        body = PublishingNow(publishing=sorted(publishing), complete=complete).model_dump(
            mode="json"
        )
        return SyncResult.model_validate(await self._post(SYNC_PATH, body))

    async def _post(self, path: str, body: dict) -> dict:
        try:
            response = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise CoordinatorUnavailable(
                f"cannot reach the coordinator at {self._http.base_url}: {exc!r}"
            ) from exc
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError as exc:
                raise CoordinatorUnavailable("the coordinator answered 200 without JSON") from exc
        message = _error_message(response)
        if response.status_code in (401, 403):
            raise CoordinatorUnavailable(
                f"the coordinator refuses the ingest secret ({response.status_code}: {message}); "
                "both sides must share STREAMR_INGEST_SECRET or the same <data_dir>/ingest-secret"
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise CoordinatorUnavailable(
                f"the coordinator answered {response.status_code}: {message}",
                retry_after_s=_retry_after(response),
            )
        raise CoordinatorRefused(response.status_code, message)


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except (ValueError, AttributeError):
        pass
    return response.reason_phrase or "no reason given"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
