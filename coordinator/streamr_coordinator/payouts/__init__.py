"""Payouts: economics, the double-entry ledger, stream budgets and payout cycles."""
