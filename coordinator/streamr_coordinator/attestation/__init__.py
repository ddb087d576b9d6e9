"""Segment attestation: every segment hashed once at the origin, signed here, checked everywhere."""
