"""Streams: ownership, public listing, stream keys and the lifecycle state machine."""
