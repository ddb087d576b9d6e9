// The checks the page makes with WebCrypto: a segment's SHA-256 and size against its signed index
// entry, and the entry's Ed25519 signature over the canonical text the coordinator signed
// (streamr_protocol.attestation.canonical_message, rebuilt here byte for byte).

const FORMAT = "streamr-segment-v1";
const encoder = new TextEncoder();

/** WebCrypto exists only in secure contexts (https, or http on localhost). */
export function canVerify() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle && globalThis.isSecureContext);
}

export function canonicalMessage(stream, entry) {
  const lines = [
    FORMAT,
    stream,
    entry.sequence,
    entry.name,
    entry.duration_ms,
    entry.size,
    entry.sha256,
  ];
  return encoder.encode(lines.join("\n"));
}

export function base64UrlDecode(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

export async function sha256Hex(data) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** True when ``data`` is exactly the segment ``entry`` describes (size first: it is free). */
export async function matchesEntry(data, entry) {
  return data.byteLength === entry.size && (await sha256Hex(data)) === entry.sha256;
}

/** The coordinator's Ed25519 key, or null when this browser's WebCrypto lacks Ed25519. */
export async function importSigningKey(rawBase64Url) {
  try {
    return await crypto.subtle.importKey(
      "raw",
      base64UrlDecode(rawBase64Url),
      { name: "Ed25519" },
      false,
      ["verify"],
    );
  } catch {
    return null;
  }
}

export async function entrySignatureValid(key, stream, entry) {
  try {
    return await crypto.subtle.verify(
      { name: "Ed25519" },
      key,
      base64UrlDecode(entry.signature),
      canonicalMessage(stream, entry),
    );
  } catch {
    return false;
  }
}
