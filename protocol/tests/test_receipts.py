"""Receipt batches: what a well-formed one looks like, and what is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamr_protocol.receipts import MAX_RECEIPTS_PER_BATCH, Receipt, ReceiptBatch


def receipt(**fields):
    body = {
        "source_kind": "node",
        "node_id": "n-1",
        "segment": "12.ts",
        "sequence": 12,
        "bytes": 1000,
        "ttfb_ms": 10,
        "download_ms": 80,
        "outcome": "ok",
    }
    return {**body, **fields}


def test_a_node_and_the_origin():
    assert Receipt.model_validate(receipt()).node_id == "n-1"
    origin = Receipt.model_validate(receipt(source_kind="origin", node_id=None))
    assert origin.node_id is None
    # Nothing was answered: no times to report.
    failed = Receipt.model_validate(receipt(outcome="error", ttfb_ms=None, download_ms=None))
    assert failed.ttfb_ms is None and failed.download_ms is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"node_id": None}, "node_id is required"),
        ({"source_kind": "origin"}, "node_id must be absent"),
        ({"outcome": "fine"}, "outcome"),
        ({"segment": "../12.ts"}, "segment"),
        ({"segment": "12.ts\x00"}, "segment"),
        ({"bytes": -1}, "bytes"),
        ({"ttfb_ms": 600_001}, "ttfb_ms"),
        ({"extra": 1}, "extra"),
    ],
)
def test_refused(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        Receipt.model_validate(receipt(**fields))


def test_a_batch_holds_one_to_a_hundred_receipts():
    ReceiptBatch(batch_id="b-12345678", receipts=[receipt()] * MAX_RECEIPTS_PER_BATCH)
    for receipts in ([], [receipt()] * (MAX_RECEIPTS_PER_BATCH + 1)):
        with pytest.raises(ValidationError, match="receipts"):
            ReceiptBatch(batch_id="b-12345678", receipts=receipts)
    with pytest.raises(ValidationError, match="batch_id"):
        ReceiptBatch(batch_id="short", receipts=[receipt()])
