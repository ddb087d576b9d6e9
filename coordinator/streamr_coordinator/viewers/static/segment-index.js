// The stream's signed segment index, read from the coordinator, and the live playlist the player
// follows, rendered from it.
//
// The playlist is built here rather than taken from a source: every segment the player is told
// about has a signed entry (sequence, name, duration, size, SHA-256), so the loader can check each
// one, and a node can neither invent segments nor hold the viewer back with a stale playlist.
// Media sequence numbers are the page's own and always consecutive (the first one is the signed
// sequence of the first entry, so they normally agree); a gap in the signed sequences, or an
// entry the ingest marked as a discontinuity, becomes #EXT-X-DISCONTINUITY.

import { callApi } from "./api.js";
import { entrySignatureValid, importSigningKey } from "./verify.js";

const WINDOW = 6; // segments listed, as the origin lists them
const KEEP = 60; // segments remembered for the loader (two minutes at 2 s)

export class SegmentIndex {
  constructor({ api, stream }) {
    this.api = api;
    this.stream = stream;
    this.items = []; // {msn, entry, discontinuity}, oldest first
    this.byMsn = new Map();
    this.lastSequence = null;
    this.targetDuration = 1;
    this.droppedDiscontinuities = 0;
    this.ended = false;
    this.keyId = null;
    this.key = null;
    this.rejectedEntries = 0;
  }

  /** "signature" when entries are checked with Ed25519 too, "hash" when only SHA-256 is. */
  get verification() {
    return this.key ? "signature" : "hash";
  }

  async loadKey() {
    const published = await callApi(this.api, "/attestation/key");
    this.keyId = published.key_id;
    this.key = await importSigningKey(published.public_key);
  }

  /** Fetch entries newer than those known; true when the index grew. */
  async refresh() {
    const query =
      this.lastSequence === null ? `limit=${WINDOW}` : `since=${this.lastSequence}&limit=100`;
    const index = await callApi(
      this.api,
      `/streams/${encodeURIComponent(this.stream)}/segments?${query}`,
    );
    if (index.key_id !== this.keyId) await this.loadKey(); // first use, or a rotated key
    let grew = false;
    for (const entry of index.segments) {
      if (this.lastSequence !== null && entry.sequence <= this.lastSequence) continue;
      if (this.key && !(await entrySignatureValid(this.key, index.stream, entry))) {
        // It came straight from the coordinator, so this is a key or server fault, not a node's;
        // the entry is left out, and its segment is never played.
        this.rejectedEntries += 1;
        console.error(`segment ${entry.sequence}: the index entry's signature is not valid`);
        continue;
      }
      this.append(entry);
      grew = true;
    }
    return grew;
  }

  append(entry) {
    const last = this.items.at(-1);
    const gap = last !== undefined && entry.sequence !== last.entry.sequence + 1;
    const item = {
      msn: last === undefined ? entry.sequence : last.msn + 1,
      entry,
      discontinuity: last !== undefined && (entry.discontinuity || gap),
    };
    this.items.push(item);
    this.byMsn.set(item.msn, item);
    this.lastSequence = entry.sequence;
    // The target duration may never shrink (RFC 8216 4.3.3.1): the largest seen.
    this.targetDuration = Math.max(this.targetDuration, Math.ceil(entry.duration_ms / 1000));
    while (this.items.length > KEEP) {
      const dropped = this.items.shift();
      this.byMsn.delete(dropped.msn);
      if (dropped.discontinuity) this.droppedDiscontinuities += 1;
    }
  }

  /** The item hls.js calls fragment ``msn``: the signed entry the loader checks against. */
  item(msn) {
    return this.byMsn.get(msn) ?? null;
  }

  get size() {
    return this.items.length;
  }

  /** The live media playlist over the newest entries, or null while there are none. */
  playlist() {
    const listed = this.items.slice(-WINDOW);
    if (listed.length === 0) return null;
    const before = this.items.length - listed.length;
    const discontinuities =
      this.droppedDiscontinuities +
      this.items.slice(0, before).filter((item) => item.discontinuity).length;
    const lines = [
      "#EXTM3U",
      "#EXT-X-VERSION:3",
      `#EXT-X-TARGETDURATION:${this.targetDuration}`,
      `#EXT-X-MEDIA-SEQUENCE:${listed[0].msn}`,
      `#EXT-X-DISCONTINUITY-SEQUENCE:${discontinuities}`,
    ];
    for (const item of listed) {
      if (item.discontinuity) lines.push("#EXT-X-DISCONTINUITY");
      lines.push(`#EXTINF:${(item.entry.duration_ms / 1000).toFixed(3)},`, item.entry.name);
    }
    if (this.ended) lines.push("#EXT-X-ENDLIST");
    return `${lines.join("\n")}\n`;
  }
}
