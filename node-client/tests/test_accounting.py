"""Usage accounting survives crashes: journals become reports under their original ids."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from streamr_node.accounting import UsageLedger
from streamr_protocol.usage import MAX_SESSIONS_PER_REPORT, IntegrityFailure


def test_an_interval_becomes_one_pending_report_until_acknowledged(tmp_path):
    ledger = UsageLedger(tmp_path, "s")
    ledger.served("a", 100, full_segment=True)
    ledger.served("a", 50, full_segment=False)
    ledger.served("b", 7, full_segment=True)
    ledger.served(None, 1000, full_segment=True)
    (report,) = ledger.cut()
    assert {(s.session_id, s.bytes, s.segments, s.requests) for s in report.sessions} == {
        ("a", 150, 1, 2),
        ("b", 7, 1, 1),
    }
    assert report.unattributed_bytes == 1000
    assert [r.report_id for r in ledger.pending()] == [report.report_id]
    assert ledger.cut() == []  # nothing served since: no empty reports
    ledger.acknowledged(report.report_id)
    assert ledger.pending() == []


def test_pending_reports_survive_a_restart_with_the_same_id(tmp_path):
    ledger = UsageLedger(tmp_path, "s")
    ledger.served("a", 10, full_segment=True)
    (report,) = ledger.cut()
    again = UsageLedger(tmp_path, "s")
    assert [r.model_dump() for r in again.pending()] == [report.model_dump()]


def test_a_journal_left_by_kill_9_becomes_a_report(tmp_path):
    # A real process killed with SIGKILL in the middle of an interval.
    code = textwrap.dedent(
        f"""
        import os, signal
        from streamr_node.accounting import UsageLedger
        ledger = UsageLedger(__import__("pathlib").Path({str(tmp_path)!r}), "s")
        for _ in range(25):
            ledger.served("viewer", 1000, full_segment=True)
        ledger.served(None, 5, full_segment=True)  # unpaid bytes are not journaled
        print(ledger._interval.report_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -9
    report_id = result.stdout.strip()
    recovered = UsageLedger(tmp_path, "s").pending()
    assert [r.report_id for r in recovered] == [report_id]
    (line,) = recovered[0].sessions
    assert (line.session_id, line.bytes, line.segments, line.requests) == ("viewer", 25_000, 25, 25)
    # A second start finds nothing left to recover: the journal became the pending report.
    assert [r.report_id for r in UsageLedger(tmp_path, "s").pending()] == [report_id]


def test_integrity_failures_travel_in_the_report(tmp_path):
    ledger = UsageLedger(tmp_path, "s")
    failure = IntegrityFailure(
        upstream_url="http://parent:8090",
        upstream_node_id="n2",
        segment="4.ts",
        sequence=4,
        reason="content does not match",
    )
    ledger.integrity_failure(failure)
    (report,) = ledger.cut()
    assert report.integrity_failures == [failure]


def test_a_very_busy_interval_is_split_deterministically(tmp_path):
    ledger = UsageLedger(tmp_path, "s")
    for n in range(MAX_SESSIONS_PER_REPORT + 3):
        ledger.served(f"v{n}", 1, full_segment=True)
    reports = ledger.cut()
    assert [len(r.sessions) for r in reports] == [MAX_SESSIONS_PER_REPORT, 3]
    assert len({r.report_id for r in reports}) == 2


def test_a_report_the_coordinator_refuses_is_set_aside_not_resent(tmp_path):
    ledger = UsageLedger(tmp_path, "s")
    ledger.served("a", 1, full_segment=True)
    (report,) = ledger.cut()
    ledger.rejected(report.report_id, "422: stream mismatch")
    assert ledger.pending() == []
    assert (tmp_path / "rejected" / f"{report.report_id}.json").exists()


def test_spool_files_are_private(tmp_path):
    ledger = UsageLedger(tmp_path / "spool", "s")
    ledger.served("a", 1, full_segment=True)
    ledger.cut()
    assert os.stat(tmp_path / "spool" / "pending").st_mode & 0o077 == 0
