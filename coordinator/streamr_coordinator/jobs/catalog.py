"""Every job the worker runs: a plain list. A domain adds its job with one line here.

``every`` is seconds, or the name of the setting that holds them; ``lease_s`` (seconds or a
setting's name too) is how soon another worker takes a job over after its worker died (the lease
is renewed while a run goes on, so it does not limit how long a run may take).
"""

from __future__ import annotations

from ..payouts.jobs import run_accrual, run_payout_cycle
from ..verification.jobs import run_prober, run_reconciliation, run_trust_update
from .housekeeping import run_retention, run_stream_timers
from .presence_reaper import run_presence_reaper
from .rollups import run_rollups
from .runner import Job
from .stats_collector import run_stats_collector

CATALOG: list[Job] = [
    Job("presence_reaper", run_presence_reaper, every="presence_reaper_interval_s", lease_s=30),
    Job("stats_collector", run_stats_collector, every="stats_interval_s", lease_s=30),
    Job("stream_timers", run_stream_timers, every="stream_timers_interval_s", lease_s=30),
    Job("rollups", run_rollups, every="rollup_interval_s", lease_s=60),
    Job("retention", run_retention, every="retention_interval_s", lease_s=60),
    # The prober keeps its own random schedule per node; this only wakes it up.
    Job("prober", run_prober, every=5, lease_s=60),
    Job("reconciliation", run_reconciliation, every="verification_jobs_interval_s", lease_s=60),
    Job("trust_update", run_trust_update, every="verification_jobs_interval_s", lease_s=60),
    # Reconciled intervals become ledger entries; both jobs' writes are keyed, so a lost lease
    # or a second worker never pays twice (the lease only saves the duplicate work).
    Job("accrual", run_accrual, every="verification_jobs_interval_s", lease_s=60),
    Job(
        "payout_cycle",
        run_payout_cycle,
        every="payout_cycle_interval_s",
        lease_s="payout_cycle_lease_s",
    ),
]
