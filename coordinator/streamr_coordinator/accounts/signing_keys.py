"""The Ed25519 keys that sign access tokens, published as a JWKS.

Every replica and every restart must accept the same tokens, so the keys are persistent: either
given by setting (one PEM, the same on every replica) or kept as PEM files in
``<data_dir>/keys/jwt/``. In the directory, the newest file signs and every file verifies, so a
rotation (``streamr keys rotate-jwt``) never invalidates tokens already handed out; old files can
be removed once the access-token lifetime has passed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @classmethod
    def from_private(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        # RFC 7638 thumbprint: the kid is derived from the key, so replicas agree on it.
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":")
        )
        return cls(
            kid=_b64url(hashlib.sha256(canonical.encode()).digest()), private_key=private_key
        )

    def jwk(self) -> dict[str, Any]:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


class SigningKeyError(Exception):
    """A configured key cannot be used; the message says which and why."""


def load_pem(data: bytes, source: str) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{source} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{source} must be an Ed25519 key (openssl genpkey -algorithm ed25519)"
        )
    return SigningKey.from_private(key)


class KeyRing:
    """The signing key plus every key whose tokens are still accepted."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise SigningKeyError("no signing key available")
        self.active = keys[0]
        self.by_kid = {key.kid: key for key in keys}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.by_kid.values()]}

    @classmethod
    def load(cls, data_dir: Path, configured_pem: str | None) -> KeyRing:
        if configured_pem:
            return cls([load_pem(configured_pem.encode(), "STREAMR_JWT_PRIVATE_KEY")])
        directory = key_directory(data_dir)
        files = sorted(directory.glob("*.pem"), reverse=True) if directory.exists() else []
        if not files:
            files = [rotate(data_dir)]
        return cls([load_pem(path.read_bytes(), str(path)) for path in files])


def key_directory(data_dir: Path) -> Path:
    return data_dir / "keys" / "jwt"


def create_key_file(path: Path) -> Path:
    """Write a new Ed25519 private key to ``path`` (mode 0600, never overwriting)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


def rotate(data_dir: Path) -> Path:
    """Create a new signing key file; it becomes the active key at the next start."""
    # Names sort by creation time, so the newest file is the active key.
    return create_key_file(key_directory(data_dir) / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.pem")
