"""Custom resource: give each new signing-key secret an Ed25519 private key.

Secrets Manager can generate passwords but not key pairs, and the coordinator wants PEM Ed25519
keys for access tokens (STREAMR_JWT_PRIVATE_KEY) and segment signatures
(STREAMR_ATTESTATION_PRIVATE_KEY). A PKCS#8 Ed25519 private key is a fixed 16-byte header and a
32-byte random seed, so the standard library is enough. A secret that already holds a PEM
private key is never touched: redeploying must not change keys (rotation is
scripts/operational-rotate-keys.sh). No key ever appears in the response or a log line.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

PEM_HEADER = "-----BEGIN PRIVATE KEY-----"
# DER of PrivateKeyInfo { version 0, AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { 32 } }
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def ed25519_private_key_pem() -> str:
    der = PKCS8_ED25519_PREFIX + secrets.token_bytes(32)
    return f"{PEM_HEADER}\n{base64.b64encode(der).decode()}\n-----END PRIVATE KEY-----\n"


def handler(event: dict[str, Any], _context: Any, client: Any = None) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId") or "signing-keys"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    if client is None:
        import boto3  # provided by the Lambda runtime

        client = boto3.client("secretsmanager")
    initialized = 0
    for arn in event["ResourceProperties"]["SecretArns"]:
        current = client.get_secret_value(SecretId=arn).get("SecretString", "")
        if current.startswith(PEM_HEADER):
            continue
        client.put_secret_value(SecretId=arn, SecretString=ed25519_private_key_pem())
        initialized += 1
    print(f"signing keys: {initialized} initialized")
    return {"PhysicalResourceId": physical_id, "Data": {"Initialized": str(initialized)}}
