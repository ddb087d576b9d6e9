"""The watch page's own JavaScript, run in Node.js (installed with npm by the bootstrap): the
checks it makes must agree with the coordinator's signatures byte for byte, and the playlist it
renders from the signed index must be valid live HLS.

Each case is a small ES module importing the page's modules from ``viewers/static``; it prints
JSON, which the test compares with what Python (``streamr_protocol``) says.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamr_coordinator.viewers.page import HERE
from streamr_protocol.attestation import b64url_encode, canonical_message
from streamr_protocol.playlist import parse

NODE = shutil.which("node")
STATIC = HERE / "static"

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (bootstrap.sh)")


def run_module(source: str, tmp_path: Path) -> Any:
    script = tmp_path / "case.mjs"
    script.write_text(source.replace("STATIC", STATIC.as_uri()))
    done = subprocess.run(
        [str(NODE), str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def signed_entry(key: Ed25519PrivateKey, stream: str, sequence: int, data: bytes) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    name = f"{sequence}.ts"
    message = canonical_message(stream, sequence, name, 2000, len(data), sha)
    return {
        "sequence": sequence,
        "name": name,
        "duration_ms": 2000,
        "size": len(data),
        "sha256": sha,
        "discontinuity": False,
        "signature": b64url_encode(key.sign(message)),
    }


def test_signatures_and_hashes_are_checked_as_the_coordinator_signs_them(tmp_path):
    key = Ed25519PrivateKey.generate()
    public = b64url_encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    stream = "ann-live"
    data = bytes(range(256)) * 40
    entry = signed_entry(key, stream, 42, data)
    cases = {
        "genuine": entry,
        "other size": {**entry, "size": entry["size"] + 1},
        "other hash": {**entry, "sha256": "0" * 64},
        "other name": {**entry, "name": "43.ts"},
        "other sequence": {**entry, "sequence": 43},
    }
    result = run_module(
        f"""
        import {{ canonicalMessage, entrySignatureValid, importSigningKey, matchesEntry }}
          from "STATIC/verify.js";
        const cases = {json.dumps(cases)};
        const data = new Uint8Array({json.dumps(list(data))}).buffer;
        const altered = new Uint8Array(data.slice(0));
        altered[100] ^= 0xff;
        const key = await importSigningKey({json.dumps(public)});
        const message = canonicalMessage("{stream}", cases.genuine);
        const out = {{ message: new TextDecoder().decode(message) }};
        out.signatures = {{}};
        for (const [label, entry] of Object.entries(cases)) {{
          out.signatures[label] = await entrySignatureValid(key, "{stream}", entry);
        }}
        out.wrongStream = await entrySignatureValid(key, "other", cases.genuine);
        out.genuineBytes = await matchesEntry(data, cases.genuine);
        out.alteredBytes = await matchesEntry(altered.buffer, cases.genuine);
        out.shortBytes = await matchesEntry(data.slice(1), cases.genuine);
        out.noKey = await importSigningKey("not a key") === null;
        console.log(JSON.stringify(out));
        """,
        tmp_path,
    )
    assert result["message"].encode() == canonical_message(
        stream, 42, "42.ts", 2000, len(data), entry["sha256"]
    )
    assert result["signatures"] == {
        "genuine": True,
        "other size": False,
        "other hash": False,
        "other name": False,
        "other sequence": False,
    }
    assert result["wrongStream"] is False
    assert (result["genuineBytes"], result["alteredBytes"], result["shortBytes"]) == (
        True,
        False,
        False,
    )
    assert result["noKey"] is True


def test_the_playlist_rendered_from_the_index_is_live_hls(tmp_path):
    rows = [(10, 2000, False), (11, 2000, False), (12, 2100, False), (14, 2000, False)]
    rows += [(15, 2000, True), (16, 2000, False), (17, 1900, False), (18, 2000, False)]
    entries = [
        {
            "sequence": sequence,
            "name": f"{sequence}.ts",
            "duration_ms": duration,
            "size": 1,
            "sha256": "0" * 64,
            "discontinuity": discontinuity,
            "signature": "",
        }
        for sequence, duration, discontinuity in rows
    ]
    result = run_module(
        f"""
        import {{ SegmentIndex }} from "STATIC/segment-index.js";
        const index = new SegmentIndex({{ api: "", stream: "s" }});
        const empty = index.playlist();
        const playlists = [];
        for (const entry of {json.dumps(entries)}) {{
          index.append(entry);
          playlists.push(index.playlist());
        }}
        index.ended = true;
        const items = [10, 13, 14, 17].map((msn) => index.item(msn)?.entry.sequence ?? null);
        console.log(JSON.stringify({{ empty, playlists, ended: index.playlist(), items }}));
        """,
        tmp_path,
    )
    assert result["empty"] is None
    first = parse(result["playlists"][0])
    assert first.media_sequence == 10 and [s.uri for s in first.segments] == ["10.ts"]
    last = parse(result["playlists"][-1])
    # Six listed; the page's own numbers stay consecutive across the gap (12 -> 14) and the
    # ingest's discontinuity (15), each marked; the target duration covers every segment.
    assert last.media_sequence == 12
    assert [s.uri for s in last.segments] == ["12.ts", "14.ts", "15.ts", "16.ts", "17.ts", "18.ts"]
    assert [s.sequence for s in last.segments] == list(range(12, 18))
    assert [s.discontinuity for s in last.segments] == [False, True, True, False, False, False]
    assert last.target_duration_s == 3 and not last.ended
    assert parse(result["ended"]).ended
    # hls.js asks for fragments by the page's numbers; each maps to its signed entry.
    assert result["items"] == [10, 14, 15, 18]
