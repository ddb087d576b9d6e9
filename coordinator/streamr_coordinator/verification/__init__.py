"""Verification: probes, reconciliation of claims against receipts, and trust."""
