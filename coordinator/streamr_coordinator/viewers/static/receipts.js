// Receipts: which source delivered which segment, bytes, time to first byte, download time and
// outcome, sent to the coordinator in batches (POST /api/v1/sessions/{id}/receipts).
//
// A batch gets its id when it is formed and keeps it until the coordinator acknowledges it, so a
// batch resent after a network fault is stored once. Anything but "ok" is sent at once: the
// coordinator's routing reads it, for this viewer and (a mismatch) for every viewer.

import { callApi } from "./api.js";

const MAX_PER_BATCH = 100; // the API's limit
const SEND_EVERY_MS = 5000;
const SEND_AT = 10; // receipts waiting

function batchId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class Receipts {
  constructor({ api, session }) {
    this.api = api;
    this.session = session;
    this.queue = [];
    this.pending = null; // the batch being sent, with its id, until acknowledged
    this.sending = false;
    this.stored = 0; // receipts the coordinator acknowledged
    this.urgent = false; // a failure is waiting: send it without waiting for the timer
    this.timer = null;
  }

  start() {
    this.timer = setInterval(() => this.flush(), SEND_EVERY_MS);
    // The last batch when the viewer leaves: keepalive lets it outlive the page.
    addEventListener("pagehide", () => this.flush({ keepalive: true }));
  }

  add(receipt) {
    this.queue.push(receipt);
    if (receipt.outcome !== "ok") this.urgent = true;
    if (this.urgent || this.queue.length >= SEND_AT) this.flush();
  }

  async flush({ keepalive = false } = {}) {
    if (this.sending) return;
    if (this.pending === null) {
      if (this.queue.length === 0) return;
      this.pending = { batch_id: batchId(), receipts: this.queue.splice(0, MAX_PER_BATCH) };
      this.urgent = false;
    }
    this.sending = true;
    const batch = this.pending;
    try {
      const path = `/sessions/${encodeURIComponent(this.session.session_id)}/receipts`;
      const ack = await callApi(this.api, path, {
        method: "POST",
        token: this.session.token,
        body: batch,
        keepalive,
      });
      this.stored += ack.duplicate ? 0 : ack.receipts;
      this.pending = null;
    } catch (error) {
      // A network fault, 429 or 5xx: the same batch goes again later. Any other refusal will not
      // change on a resend (a bug, or a session that ended): drop it, and say so.
      const retry = error.status === 0 || error.status === 429 || error.status >= 500;
      if (!retry) {
        console.warn(`receipts refused (${error.status}): ${error.message}`);
        this.pending = null;
      }
    } finally {
      this.sending = false;
    }
    if (this.pending === null && (this.urgent || this.queue.length >= SEND_AT)) this.flush();
  }
}
