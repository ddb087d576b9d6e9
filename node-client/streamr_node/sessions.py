"""Viewer session tokens, checked locally: no call to the coordinator per request.

A token's signature is checked once and the answer cached until the token expires, so a
viewer's hundreds of requests cost one Ed25519 verification.
"""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_protocol.viewer_sessions import SessionTokenError, decode_session_token

MAX_CACHED = 20_000


class SessionVerifier:
    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._valid: dict[str, tuple[str, float]] = {}  # token -> (session id, expires at)

    def set_key(self, key_id: str, key: Ed25519PublicKey) -> None:
        if key_id not in self._keys:
            self._keys[key_id] = key

    def session_id(self, token: str, now: float | None = None) -> str:
        """The token's session id; SessionTokenError when it is forged, expired or foreign."""
        now = time.time() if now is None else now
        cached = self._valid.get(token)
        if cached is not None:
            if cached[1] > now:
                return cached[0]
            del self._valid[token]
            raise SessionTokenError("expired")
        claims = decode_session_token(token, self._keys, stream=self.stream, now=now)
        if len(self._valid) >= MAX_CACHED:
            self._valid.clear()  # rare; dropping the cache only costs re-verification
        self._valid[token] = (claims.session_id, float(claims.expires_at))
        return claims.session_id
