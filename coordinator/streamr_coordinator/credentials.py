"""Opaque secrets (stream keys, node tokens, invite codes, refresh tokens): make, hash, compare.

These are 256-bit random values, so a single SHA-256 is enough to store them safely (unlike
passwords, they cannot be guessed from a dictionary) and lets the hot paths look them up by hash
in one indexed query. The prefix says what a secret is when someone pastes it in the wrong place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

STREAM_KEY_PREFIX = "sk_"
NODE_TOKEN_PREFIX = "snt_"  # noqa: S105 - a prefix, not a secret
INVITE_CODE_PREFIX = "inv_"
REFRESH_TOKEN_PREFIX = "srt_"  # noqa: S105 - a prefix, not a secret


def new_secret(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
