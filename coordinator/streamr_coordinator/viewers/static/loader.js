// hls.js loaders that never hand the player a byte the coordinator did not sign.
//
// Playlist loader: the live playlist is rendered from the signed index (segment-index.js), so
// every fragment hls.js asks for has a signed entry.
//
// Fragment loader: for each fragment, try the sources in order (the current one first, the
// origin last). From each: fetch with the session token, read the body while timing it, then
// check size and SHA-256 against the signed entry with WebCrypto. Only a match goes to the
// player. A mismatch, an error or a stall is receipted against that source, which the page then
// skips, and the same fragment is fetched from the next source at once. A node that does not
// have a brand-new segment yet (404) is given a moment before it counts as failed.

const FIRST_BYTE_MS = 3000; // no answer by then: a stall
const PROGRESS_MS = 3000; // no new bytes for this long: a stall
const NOT_YET_RETRIES = 4; // a node's 404 for a new segment: ask again this often...
const NOT_YET_WAIT_MS = 300; // ...this far apart
const ROUND_WAIT_MS = 1000; // every source failed: wait, then try them all again
const LOAD_BUDGET_MS = 20_000; // then report the fragment as failed to hls.js (it retries)
const PLAYLIST_WAIT_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newStats() {
  return {
    aborted: false,
    loaded: 0,
    retry: 0,
    total: 0,
    chunkCount: 0,
    bwEstimate: 0,
    loading: { start: 0, first: 0, end: 0 },
    parsing: { start: 0, end: 0 },
    buffering: { start: 0, first: 0, end: 0 },
  };
}

function concat(chunks, length) {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}

/** One GET of one segment from one source: {outcome, data?, bytes, ttfbMs, downloadMs, status}.
 * Outcomes: ok, mismatch, error, stall, not-yet (a node's 404), aborted (hls.js gave up). */
async function fetchSegment({ url, entry, verify, signal }) {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  signal.addEventListener("abort", onAbort);
  const started = performance.now();
  const result = { outcome: "error", bytes: 0, ttfbMs: null, downloadMs: null, status: 0 };
  let stalled = false;
  let watchdog = null;
  const arm = (ms) => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      stalled = true;
      controller.abort();
    }, ms);
  };
  // A source that keeps trickling is no better than one that stopped: a segment must arrive
  // well within twice its own duration, or playback could not keep up with it.
  const deadline = setTimeout(
    () => {
      stalled = true;
      controller.abort();
    },
    Math.max(4000, 2 * entry.duration_ms),
  );
  arm(FIRST_BYTE_MS);
  try {
    const response = await fetch(url, {
      signal: controller.signal,
      credentials: "omit",
      mode: "cors",
    });
    result.ttfbMs = performance.now() - started;
    result.status = response.status;
    if (!response.ok) {
      result.outcome = response.status === 404 ? "not-yet" : "error";
      await response.body?.cancel();
      return result;
    }
    arm(PROGRESS_MS);
    const reader = response.body.getReader();
    const chunks = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      result.bytes += value.byteLength;
      if (result.bytes > entry.size) {
        // Already longer than what was signed: no need to read the rest.
        controller.abort();
        result.outcome = "mismatch";
        return result;
      }
      arm(PROGRESS_MS);
    }
    result.downloadMs = performance.now() - started;
    const data = concat(chunks, result.bytes);
    if (!(await verify(data, entry))) {
      result.outcome = "mismatch";
      return result;
    }
    result.outcome = "ok";
    result.data = data;
    return result;
  } catch {
    if (signal.aborted) result.outcome = "aborted";
    else result.outcome = stalled ? "stall" : "error";
    return result;
  } finally {
    clearTimeout(watchdog);
    clearTimeout(deadline);
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * The loader classes for hls.js's ``pLoader`` and ``fLoader``, bound to this page's state.
 * ``onFetched(source, item, result)`` hears about every attempt (receipts, the overlay).
 */
export function createLoaders({ stream, index, sources, session, verify, onFetched }) {
  class SignedPlaylistLoader {
    constructor() {
      this.context = null;
      this.stats = newStats();
      this.aborted = false;
    }

    load(context, config, callbacks) {
      this.context = context;
      this.stats.loading.start = performance.now();
      const budget = config.loadPolicy?.maxLoadTimeMs ?? LOAD_BUDGET_MS;
      this.run(budget).then(
        (text) => {
          if (this.aborted) return;
          const now = performance.now();
          this.stats.loading.first = now;
          this.stats.loading.end = now;
          this.stats.loaded = text.length;
          this.stats.total = text.length;
          callbacks.onSuccess({ url: context.url, data: text, code: 200 }, this.stats, context, null);
        },
        (error) => {
          if (this.aborted) return;
          callbacks.onError(
            { code: error.status ?? 0, text: error.message },
            context,
            null,
            this.stats,
          );
        },
      );
    }

    async run(budget) {
      const giveUp = performance.now() + budget;
      for (;;) {
        await index.refresh();
        const text = index.playlist();
        if (text !== null) return text;
        if (performance.now() > giveUp) throw new Error("no signed segments yet");
        await sleep(PLAYLIST_WAIT_MS); // the stream just started: its first segments are coming
      }
    }

    abort() {
      this.aborted = true;
      this.stats.aborted = true;
    }

    destroy() {
      this.aborted = true;
    }
  }

  class VerifiedFragmentLoader {
    constructor() {
      this.context = null;
      this.stats = newStats();
      this.controller = new AbortController();
      this.callbacks = null;
    }

    load(context, config, callbacks) {
      this.context = context;
      this.callbacks = callbacks;
      this.stats.loading.start = performance.now();
      const budget = Math.min(config.loadPolicy?.maxLoadTimeMs ?? LOAD_BUDGET_MS, LOAD_BUDGET_MS);
      this.run(context, budget).then(
        (delivered) => {
          if (this.controller.signal.aborted || this.callbacks === null) return;
          if (delivered === null) {
            callbacks.onError(
              { code: 0, text: "no source delivered this segment as signed" },
              context,
              null,
              this.stats,
            );
            return;
          }
          const now = performance.now();
          this.stats.loading.first = this.stats.loading.start + (delivered.ttfbMs ?? 0);
          this.stats.loading.end = now;
          this.stats.loaded = delivered.bytes;
          this.stats.total = delivered.bytes;
          callbacks.onSuccess(
            { url: context.url, data: delivered.data, code: 200 },
            this.stats,
            context,
            null,
          );
        },
        (error) => {
          if (this.controller.signal.aborted || this.callbacks === null) return;
          callbacks.onError({ code: 0, text: String(error) }, context, null, this.stats);
        },
      );
    }

    async run(context, budget) {
      const item = index.item(context.frag.sn);
      if (item === null) return null; // not a fragment of the signed playlist: never played
      const signal = this.controller.signal;
      const giveUp = performance.now() + budget;
      while (!signal.aborted && performance.now() < giveUp) {
        for (const source of sources.ordered()) {
          const result = await this.fetchFrom(source, item, signal);
          if (result.outcome === "aborted") return null;
          onFetched(source, item, result);
          if (result.outcome === "ok") return result;
          sources.failed(source, result.outcome);
          this.stats.retry += 1;
        }
        await sleep(ROUND_WAIT_MS);
      }
      return null;
    }

    async fetchFrom(source, item, signal) {
      const url = new URL(
        `${source.base_url}/hls/${encodeURIComponent(stream)}/${encodeURIComponent(item.entry.name)}`,
      );
      // Nodes count bytes per session. The query parameter, not the header, keeps the request
      // "simple" for CORS: no preflight per segment. The origin counts nothing and needs none.
      if (source.kind === "node") url.searchParams.set("session", session.token);
      let result;
      for (let attempt = 0; ; attempt += 1) {
        result = await fetchSegment({ url, entry: item.entry, verify, signal });
        const retry = result.outcome === "not-yet" && source.kind === "node";
        if (!retry || attempt >= NOT_YET_RETRIES || signal.aborted) break;
        await sleep(NOT_YET_WAIT_MS);
      }
      if (result.outcome === "not-yet") result.outcome = "error";
      if (signal.aborted) result.outcome = "aborted";
      return result;
    }

    abort() {
      this.stats.aborted = true;
      this.controller.abort();
      this.callbacks?.onAbort?.(this.stats, this.context, null);
    }

    destroy() {
      this.callbacks = null;
      this.controller.abort();
    }
  }

  return { pLoader: SignedPlaylistLoader, fLoader: VerifiedFragmentLoader };
}
