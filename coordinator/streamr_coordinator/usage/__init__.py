"""Usage: what each node says it served, per viewer session, counted once per report id."""
