// Where segments come from: the coordinator's ordered list for this session (the best nodes, then
// the origin), asked for again every segment duration, minus the nodes this page saw fail.
//
// The page does not wait for the coordinator to learn about a failure: a node that delivered a
// segment that did not match its signature is never asked again by this page, and one that
// failed (error, stall, refused) is skipped for FAILED_NODE_PAUSE_MS. The origin is always last
// and never skipped: it is the source of last resort.

import { ApiError, callApi, sleep } from "./api.js";

const FAILED_NODE_PAUSE_MS = 30_000;

export class Sources {
  constructor({ api, session, onChange }) {
    this.api = api;
    this.session = session; // {session_id, token, sources, ...}; the token may be renewed
    this.list = session.sources;
    this.onAir = true;
    this.refreshMs = 2000;
    this.skipUntil = new Map(); // node id -> time (performance.now) it may be tried again
    this.onChange = onChange ?? (() => {});
    this.stopped = false;
  }

  /** The sources to try for the next segment, best first; the origin is always the last. */
  ordered() {
    const now = performance.now();
    return this.list.filter(
      (source) => source.kind === "origin" || !((this.skipUntil.get(source.node_id) ?? 0) > now),
    );
  }

  /** Remember a failure of ``source``; a mismatch is never forgiven in this session. */
  failed(source, outcome) {
    if (source.kind !== "node") return;
    const pause = outcome === "mismatch" ? Number.POSITIVE_INFINITY : FAILED_NODE_PAUSE_MS;
    this.skipUntil.set(source.node_id, performance.now() + pause);
  }

  async refresh() {
    const path = `/sessions/${encodeURIComponent(this.session.session_id)}/sources`;
    const answer = await callApi(this.api, path, { token: this.session.token });
    this.list = answer.sources;
    this.onAir = answer.on_air;
    this.refreshMs = Math.max(500, answer.refresh_s * 1000);
    this.onChange(answer);
  }

  /** Ask every refresh interval until stopped. ``onExpired`` renews the session when the
   * coordinator no longer takes its token (it expired, or the session was pruned). */
  async follow(onExpired) {
    while (!this.stopped) {
      await sleep(this.refreshMs);
      try {
        await this.refresh();
      } catch (error) {
        if (error instanceof ApiError && (error.status === 401 || error.status === 404)) {
          await onExpired();
        }
        // Otherwise keep the last list: the loader still moves on from any source that fails.
      }
    }
  }

  stop() {
    this.stopped = true;
  }
}
