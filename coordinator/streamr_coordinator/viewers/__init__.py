"""Viewers: anonymous, short-lived sessions and the ordered sources each watch is sent to."""
