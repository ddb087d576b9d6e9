"""Every domain's models, imported together so the metadata (and Alembic) sees all tables."""

from .accounts.models import Account, RefreshToken
from .attestation.models import Segment
from .database import Base
from .invites.models import Invite
from .nodes.models import Node
from .streams.models import Stream, StreamTransition
from .usage.models import IntegrityFailure, UsageLine, UsageReport
from .viewers.models import Receipt, ReceiptBatch, ViewerSession

__all__ = [
    "Account",
    "Base",
    "IntegrityFailure",
    "Invite",
    "Node",
    "Receipt",
    "ReceiptBatch",
    "RefreshToken",
    "Segment",
    "Stream",
    "StreamTransition",
    "UsageLine",
    "UsageReport",
    "ViewerSession",
]
