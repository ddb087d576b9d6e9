"""Every domain's models, imported together so the metadata (and Alembic) sees all tables."""

from .accounts.models import Account, RefreshToken
from .attestation.models import Segment
from .database import Base
from .invites.models import Invite
from .jobs.models import JobLease, JobRun, NodeStats, UsageHourly
from .nodes.models import Node
from .payouts.models import (
    Accrual,
    EconomicsVersion,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
)
from .streams.models import Stream, StreamTransition
from .usage.models import IntegrityFailure, UsageLine, UsageReport
from .verification.models import (
    Discrepancy,
    NodeNetwork,
    Probe,
    Reconciliation,
    ReconciliationSession,
    TrustEvent,
    TrustState,
    Watermark,
)
from .viewers.models import Receipt, ReceiptBatch, ViewerSession

__all__ = [
    "Account",
    "Accrual",
    "Base",
    "Discrepancy",
    "EconomicsVersion",
    "IntegrityFailure",
    "Invite",
    "JobLease",
    "JobRun",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Node",
    "NodeNetwork",
    "NodeStats",
    "Payout",
    "Probe",
    "Receipt",
    "ReceiptBatch",
    "Reconciliation",
    "ReconciliationSession",
    "RefreshToken",
    "Segment",
    "Stream",
    "StreamTransition",
    "TrustEvent",
    "TrustState",
    "UsageHourly",
    "UsageLine",
    "UsageReport",
    "ViewerSession",
    "Watermark",
]
