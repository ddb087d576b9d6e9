"""A simulated network that runs the real routing, reconciliation, trust and payout code."""
