"""Accounts: streamers, friends and admins; passwords, access and refresh tokens."""
