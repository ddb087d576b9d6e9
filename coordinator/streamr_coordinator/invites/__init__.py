"""Invites: how a streamer lets a friend attach nodes without ever sharing the stream key."""
