// The watch page: open a viewer session, then play the stream from friends' nodes with every
// segment checked against the coordinator's signed index before the player gets it.
//
// Three ways to play, best first:
// - verified: hls.js with the loaders of loader.js (nodes first, the origin last, receipts);
// - origin only, with hls.js: the page is not a secure context, so WebCrypto is missing and
//   nothing could be checked; only the streamer's own server is trusted then;
// - origin only, natively: the browser has no Media Source Extensions but plays HLS itself
//   (older iPhones); the page cannot see the segments, so again only the origin is used.

import { callApi, sleep } from "./api.js";
import { createLoaders } from "./loader.js";
import { Receipts } from "./receipts.js";
import { SegmentIndex } from "./segment-index.js";
import { Sources } from "./sources.js";
import { canVerify, matchesEntry } from "./verify.js";

const config = JSON.parse(document.getElementById("watch-config").textContent);
const API = config.api;
const STREAM_PATH = `/streams/${encodeURIComponent(config.stream)}`;

const video = document.getElementById("video");
const ui = {
  status: document.getElementById("status"),
  overlay: document.getElementById("overlay"),
  sourceName: document.getElementById("source-name"),
  share: document.getElementById("friend-share"),
  note: document.getElementById("note"),
  badge: document.getElementById("badge"),
};

// What the page is doing, readable from the console (and by the end-to-end tests).
const state = {
  mode: "starting",
  verification: null, // "signature" (Ed25519 and SHA-256) or "hash" (SHA-256 only)
  sessionId: null,
  source: null, // the source of the last segment played: {kind, node_id, name}
  bytes: { node: 0, origin: 0 },
  outcomes: { ok: 0, mismatch: 0, error: 0, stall: 0 },
  errors: [], // hls.js errors: [details, fatal]
  get receiptsStored() {
    return receipts?.stored ?? 0;
  },
};
window.streamrWatch = state;
let receipts = null;

function say(text) {
  ui.status.textContent = text;
}

function showNote(text) {
  ui.note.textContent = text;
  ui.note.hidden = false;
}

function showStatus(status, onAir) {
  ui.badge.textContent = status;
  ui.badge.classList.toggle("live", onAir);
  ui.badge.classList.toggle("off", !onAir);
}

function showSource(source) {
  ui.overlay.hidden = false;
  ui.overlay.classList.toggle("node", source.kind === "node");
  ui.overlay.classList.toggle("origin", source.kind === "origin");
  // textContent, never HTML: a node's name is its owner's free text.
  ui.sourceName.textContent =
    source.kind === "node" ? `via ${source.name || "a friend's node"}` : "via origin";
  const total = state.bytes.node + state.bytes.origin;
  ui.share.textContent =
    total > 0 ? `${Math.round((100 * state.bytes.node) / total)}% from friends` : "";
}

async function openSession() {
  for (;;) {
    try {
      const session = await callApi(API, `${STREAM_PATH}/sessions`, { method: "POST" });
      state.sessionId = session.session_id;
      showStatus(config.status === "TESTING" ? "TESTING" : "LIVE", true);
      return session;
    } catch (error) {
      if (error.status === 409) {
        showStatus(error.details?.status ?? "OFFLINE", false);
        say("The stream is not live right now; it starts here when it is.");
        await sleep(5000);
      } else if (error.status === 404) {
        say("This stream no longer exists.");
        throw error;
      } else if (error.status === 429) {
        say("Too many viewers from this address right now; trying again shortly…");
        await sleep(error.retryAfterMs ?? 10_000);
      } else {
        say("The server cannot be reached; trying again…");
        await sleep(3000);
      }
    }
  }
}

function watchVideo() {
  video.addEventListener("playing", () => say(""));
  video.addEventListener("waiting", () => say("Loading…"));
  video.addEventListener("ended", () => say("The stream has ended."));
}

function receipt(source, item, result) {
  const ms = (value) => (value === null ? null : Math.min(600_000, Math.round(value)));
  return {
    source_kind: source.kind,
    node_id: source.kind === "node" ? source.node_id : null,
    segment: item.entry.name,
    sequence: item.entry.sequence,
    bytes: result.bytes,
    ttfb_ms: ms(result.ttfbMs),
    download_ms: ms(result.downloadMs),
    outcome: result.outcome,
  };
}

function startHls(hls, playlistUrl) {
  hls.on(Hls.Events.ERROR, (_event, data) => {
    state.errors.push([data.details, data.fatal]);
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      setTimeout(() => hls.startLoad(), 1000);
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      hls.recoverMediaError();
    } else {
      say("Playback failed; reload the page to try again.");
    }
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch(() => say("Press play to start."));
  });
  hls.loadSource(playlistUrl);
  hls.attachMedia(video);
}

async function playVerified(session) {
  state.mode = "verified";
  const index = new SegmentIndex({ api: API, stream: config.stream });
  await index.loadKey();
  state.verification = index.verification;
  const sources = new Sources({
    api: API,
    session,
    onChange: (answer) => {
      showStatus(answer.status, answer.on_air);
      if (!answer.on_air) index.ended = true; // the playlist gets #EXT-X-ENDLIST
    },
  });
  receipts = new Receipts({ api: API, session });
  receipts.start();
  sources.follow(async () => {
    // The session expired (they last hours) or was pruned: carry on under a new one.
    const renewed = await openSession();
    Object.assign(session, renewed);
    sources.list = renewed.sources;
  });

  const loaders = createLoaders({
    stream: config.stream,
    index,
    sources,
    session,
    verify: matchesEntry,
    onFetched: (source, item, result) => {
      receipts.add(receipt(source, item, result));
      state.outcomes[result.outcome] += 1;
      if (result.outcome !== "ok") return;
      state.bytes[source.kind === "node" ? "node" : "origin"] += result.bytes;
      state.source = { kind: source.kind, node_id: source.node_id ?? null, name: source.name };
      showSource(source);
    },
  });
  const hls = new Hls({
    pLoader: loaders.pLoader,
    fLoader: loaders.fLoader,
    liveSyncDurationCount: 3,
    maxBufferLength: 20,
    backBufferLength: 30,
  });
  // Never fetched: the playlist loader renders it from the signed index.
  startHls(hls, new URL(`/watch/${encodeURIComponent(config.stream)}/signed.m3u8`, location).href);
  if (state.verification === "hash") {
    showNote(
      "This browser cannot check the streamer's signatures (no Ed25519 in WebCrypto); " +
        "each segment is still checked against its SHA-256 from the coordinator.",
    );
  }
}

function playFromOrigin(session, reason, withHls) {
  state.mode = withHls ? "origin-hls" : "origin-native";
  const origin = session.sources.at(-1);
  const playlist = origin.base_url + session.playlist_path;
  showNote(reason);
  state.source = { kind: "origin", node_id: null, name: null };
  showSource(origin);
  ui.share.textContent = "";
  if (withHls) {
    startHls(new Hls({ liveSyncDurationCount: 3 }), playlist);
  } else {
    video.src = playlist;
    video.play().catch(() => say("Press play to start."));
  }
}

async function main() {
  watchVideo();
  const hlsJs = typeof Hls !== "undefined" && Hls.isSupported();
  const nativeHls = video.canPlayType("application/vnd.apple.mpegurl") !== "";
  if (!hlsJs && !nativeHls) {
    state.mode = "unsupported";
    say(
      typeof Hls === "undefined"
        ? "The player could not be loaded; reload the page."
        : "This browser cannot play live video streams.",
    );
    return;
  }
  say("Connecting…");
  const session = await openSession();
  say("Loading…");
  if (hlsJs && canVerify()) {
    await playVerified(session);
  } else if (hlsJs) {
    playFromOrigin(
      session,
      "This page was not opened over a secure connection, so it cannot check what friends' " +
        "nodes send; it plays from the streamer's own server only.",
      true,
    );
  } else {
    playFromOrigin(
      session,
      "This browser plays the video itself, so the page cannot check what friends' nodes " +
        "send; it plays from the streamer's own server only.",
      false,
    );
  }
}

main().catch((error) => {
  console.error(error);
  if (!ui.status.textContent) say("Something went wrong; reload the page.");
});
