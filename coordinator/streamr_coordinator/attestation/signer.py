"""The coordinator's attestation key: persistent, so signatures outlive restarts.

It signs segment index entries and viewer session tokens; both formats start with their own
name, so neither can be replayed as the other.

Given by ``STREAMR_ATTESTATION_PRIVATE_KEY`` (one PEM, the same on every replica) or kept in
``<data_dir>/keys/attestation.pem``, created on first use.
"""

from __future__ import annotations

from pathlib import Path

from streamr_protocol.attestation import AttestationKey, b64url_encode, canonical_message

from ..accounts.signing_keys import SigningKey, create_key_file, load_pem


class SegmentSigner:
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def load(cls, data_dir: Path, configured_pem: str | None) -> SegmentSigner:
        if configured_pem:
            return cls(load_pem(configured_pem.encode(), "STREAMR_ATTESTATION_PRIVATE_KEY"))
        path = data_dir / "keys" / "attestation.pem"
        if not path.exists():
            create_key_file(path)
        return cls(load_pem(path.read_bytes(), str(path)))

    @property
    def key_id(self) -> str:
        return self._key.kid

    def public(self) -> AttestationKey:
        return AttestationKey(key_id=self._key.kid, public_key=self._key.jwk()["x"])

    def sign(
        self, stream: str, sequence: int, name: str, duration_ms: int, size: int, sha256: str
    ) -> str:
        message = canonical_message(stream, sequence, name, duration_ms, size, sha256)
        return b64url_encode(self.sign_bytes(message))

    def sign_bytes(self, message: bytes) -> bytes:
        """A raw Ed25519 signature. Callers sign only messages that begin with their own format
        name (``streamr-segment-v1``, ``streamr-session-v1``), so one kind of signed message can
        never pass for another."""
        return self._key.private_key.sign(message)
