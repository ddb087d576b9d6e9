"""What this node served, per viewer session, kept so that no report is lost or counted twice.

Every completed response to a viewer with a valid session is appended to the open interval's
journal (one small write; the kernel keeps it even if the process is killed). Every reporting
interval the journal is folded into a report with an id chosen now, written to ``pending/``
atomically, and sent. A report leaves ``pending/`` only when the coordinator has acknowledged
it, and the coordinator counts each report id once, so a crash at any point loses nothing and
a resend counts nothing twice. On start, a journal left by a crash becomes a report.

Bytes without a valid session are counted too, but only in memory: they are not paid for.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from streamr_protocol.usage import (
    MAX_INTEGRITY_FAILURES,
    MAX_SESSIONS_PER_REPORT,
    IntegrityFailure,
    UsageReport,
)

log = logging.getLogger("streamr_node.accounting")

JOURNAL_PREFIX = "open-"


@dataclass
class _Interval:
    report_id: str
    started: datetime
    sessions: dict[str, list[int]] = field(default_factory=dict)  # id -> [bytes, segs, reqs]
    unattributed_bytes: int = 0
    unattributed_requests: int = 0
    integrity_failures: list[IntegrityFailure] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.sessions or self.unattributed_requests or self.integrity_failures)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_report_id() -> str:
    return uuid.uuid4().hex


class UsageLedger:
    def __init__(self, spool_dir: Path, stream: str) -> None:
        self.stream = stream
        self.pending_dir = spool_dir / "pending"
        self.rejected_dir = spool_dir / "rejected"
        self.journal_dir = spool_dir
        self.pending_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.totals = {"attributed_bytes": 0, "unattributed_bytes": 0, "segments": 0}
        self._recover()
        self._open()

    # ------------------------------------------------------------------ recording

    def served(self, session_id: str | None, nbytes: int, *, full_segment: bool) -> None:
        interval = self._interval
        if session_id is None:
            interval.unattributed_bytes += nbytes
            interval.unattributed_requests += 1
            self.totals["unattributed_bytes"] += nbytes
            return
        line = interval.sessions.get(session_id)
        if line is None:
            line = interval.sessions[session_id] = [0, 0, 0]
        line[0] += nbytes
        line[1] += full_segment
        line[2] += 1
        self.totals["attributed_bytes"] += nbytes
        self.totals["segments"] += full_segment
        os.write(self._journal_fd, f"s\t{session_id}\t{nbytes}\t{int(full_segment)}\n".encode())

    def integrity_failure(self, failure: IntegrityFailure) -> None:
        interval = self._interval
        if len(interval.integrity_failures) < MAX_INTEGRITY_FAILURES:
            interval.integrity_failures.append(failure)
            os.write(self._journal_fd, f"f\t{failure.model_dump_json()}\n".encode())

    # ------------------------------------------------------------------ reports

    def cut(self) -> list[UsageReport]:
        """Close the interval: its reports (none when nothing was served) go to pending/."""
        closed, journal = self._interval, self._journal_path
        os.close(self._journal_fd)
        self._open()
        reports = self._reports(closed, _now())
        for report in reports:
            self._write_pending(report)
        journal.unlink(missing_ok=True)
        return reports

    def pending(self) -> list[UsageReport]:
        reports = []
        for path in sorted(self.pending_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns):
            try:
                reports.append(UsageReport.model_validate_json(path.read_bytes()))
            except ValueError:
                self._set_aside(path, "unreadable")
        return reports

    def pending_count(self) -> int:
        return sum(1 for _ in self.pending_dir.glob("*.json"))

    def acknowledged(self, report_id: str) -> None:
        (self.pending_dir / f"{report_id}.json").unlink(missing_ok=True)

    def rejected(self, report_id: str, reason: str) -> None:
        """The coordinator refused the report as invalid: keep it for a person, stop resending."""
        self._set_aside(self.pending_dir / f"{report_id}.json", reason)

    # ------------------------------------------------------------------ internals

    def _open(self) -> None:
        self._interval = _Interval(report_id=_new_report_id(), started=_now())
        self._journal_path = self.journal_dir / f"{JOURNAL_PREFIX}{self._interval.report_id}.log"
        self._journal_fd = os.open(
            self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        os.write(self._journal_fd, f"t\t{self._interval.started.isoformat()}\n".encode())

    def _reports(self, interval: _Interval, ended: datetime) -> list[UsageReport]:
        """One report per interval; a very busy interval is split, with ids derived from the
        interval's, so that a journal recovered after a crash yields the very same reports."""
        if interval.empty:
            return []
        lines = [
            {"session_id": sid, "bytes": b, "segments": s, "requests": r}
            for sid, (b, s, r) in interval.sessions.items()
        ]
        chunks = [
            lines[i : i + MAX_SESSIONS_PER_REPORT]
            for i in range(0, len(lines), MAX_SESSIONS_PER_REPORT)
        ] or [[]]
        return [
            UsageReport(
                report_id=interval.report_id if len(chunks) == 1 else f"{interval.report_id}-{n}",
                stream=self.stream,
                period_start=interval.started,
                period_end=max(ended, interval.started),
                sessions=chunk,
                unattributed_bytes=interval.unattributed_bytes if n == 0 else 0,
                unattributed_requests=interval.unattributed_requests if n == 0 else 0,
                integrity_failures=interval.integrity_failures if n == 0 else [],
            )
            for n, chunk in enumerate(chunks)
        ]

    def _write_pending(self, report: UsageReport) -> None:
        path = self.pending_dir / f"{report.report_id}.json"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(report.model_dump_json().encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _recover(self) -> None:
        """Turn journals left by a crash into pending reports, under their original ids."""
        for journal in sorted(self.journal_dir.glob(f"{JOURNAL_PREFIX}*.log")):
            report_id = journal.stem.removeprefix(JOURNAL_PREFIX)
            interval = _Interval(report_id=report_id, started=_now())
            for raw in journal.read_bytes().decode(errors="replace").splitlines():
                parts = raw.split("\t")
                try:
                    if parts[0] == "t":
                        interval.started = datetime.fromisoformat(parts[1])
                    elif parts[0] == "s" and len(parts) == 4:
                        line = interval.sessions.setdefault(parts[1], [0, 0, 0])
                        line[0] += int(parts[2])
                        line[1] += int(parts[3])
                        line[2] += 1
                    elif parts[0] == "f":
                        interval.integrity_failures.append(
                            IntegrityFailure.model_validate_json(raw[2:])
                        )
                except (ValueError, IndexError):
                    continue  # a line cut short by the crash
            ended = datetime.fromtimestamp(journal.stat().st_mtime, UTC)
            for report in self._reports(interval, ended):
                self._write_pending(report)
                log.info(
                    "usage recovered after an unclean stop",
                    extra={"report_id": report.report_id, "sessions": len(report.sessions)},
                )
            journal.unlink()

    def _set_aside(self, path: Path, reason: str) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            os.replace(path, self.rejected_dir / path.name)
            (self.rejected_dir / f"{path.stem}.reason").write_text(reason + "\n")
        log.error("usage report set aside", extra={"report": path.stem, "reason": reason})
