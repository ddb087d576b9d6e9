"""Short-lived access JWTs (EdDSA) and their verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import jwt

from ..database import utcnow
from .signing_keys import KeyRing

ISSUER = "streamr-coordinator"
AUDIENCE = "streamr-api"


@dataclass(frozen=True)
class AccessClaims:
    account_id: str
    role: str


def issue_access_token(keys: KeyRing, account_id: str, role: str, ttl_s: int) -> str:
    now = utcnow()
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": account_id,
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl_s),
    }
    return jwt.encode(
        claims, keys.active.private_key, algorithm="EdDSA", headers={"kid": keys.active.kid}
    )


class InvalidToken(Exception):
    pass


def verify_access_token(keys: KeyRing, token: str) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("not a JWT") from exc
    key = keys.by_kid.get(str(header.get("kid")))
    if key is None:
        raise InvalidToken("signed by an unknown key")
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iat"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("expired; refresh it with POST /api/v1/auth/refresh") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("invalid signature or claims") from exc
    return AccessClaims(account_id=str(claims["sub"]), role=str(claims.get("role", "")))
