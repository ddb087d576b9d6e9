// What every dashboard page shares: polling its JSON, filling the page from it, and charts.
//
// Values reach the page only through textContent (and a local path through setAttribute), never
// as HTML, so a stream title or node name is always text. The markup to fill comes from the
// server: elements name their JSON field with data-field, lists of rows are filled from a
// <template> the server rendered with the same macro as the rows themselves.

export const POLL_MS = 5000;
const MAX_BACKOFF_MS = 60000;

export const COLORS = {
  friend: "#2f7d5b",
  origin: "#9aa0a8",
  integrity: "#c0392b",
  reachability: "#e08e0b",
  reports: "#3b6fb6",
};

export function lookup(data, path) {
  return path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), data);
}

function scaled(value, units) {
  let amount = value;
  for (let i = 0; i < units.length; i += 1) {
    if (Math.abs(amount) < 1000 || i === units.length - 1) {
      return i === 0 ? `${value} ${units[0]}` : `${amount.toFixed(1)} ${units[i]}`;
    }
    amount /= 1000;
  }
  return String(value);
}

// Decimal units, as CDNs bill them (1 GB = 10^9 bytes); the same as formatting.py.
export function formatBytes(value) {
  return value == null ? "—" : scaled(value, ["B", "kB", "MB", "GB", "TB", "PB"]);
}

export function formatBps(value) {
  return value == null ? "—" : scaled(value, ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"]);
}

export function formatWhen(value) {
  if (value == null) return "never";
  const when = new Date(value);
  return Number.isNaN(when.getTime()) ? "" : `${when.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

const FORMATS = {
  bytes: formatBytes,
  bps: formatBps,
  when: formatWhen,
  online: (value) => (value ? "online" : "offline"),
  reach: (value) => (value ? String(value).replaceAll("_", " ") : "not checked yet"),
  percent: (value) => (value == null ? "nothing delivered yet" : `${value} %`),
  ms: (value) => (value == null ? "—" : `${value} ms`),
  version: (value) => (value == null ? "defaults" : String(value)),
  words: (value) => (value == null ? "" : String(value).replaceAll("_", " ")),
  counts: (value) => {
    const entries = Object.entries(value || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return entries.length ? entries.map(([key, n]) => `${n} ${key.toLowerCase()}`).join(", ") : "none";
  },
};

export function format(value, kind) {
  const formatter = FORMATS[kind];
  if (formatter) return formatter(value);
  return value == null ? "" : String(value);
}

// The same as formatting.slug: the CSS class of a badge follows the words it shows.
export function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "none";
}

// Elements of root (root included) matching selector, except those inside a nested list of
// rows: each row is filled from its own JSON object.
function own(root, selector) {
  const found = [...root.querySelectorAll(selector)];
  if (root.matches(selector)) found.unshift(root);
  return found.filter((el) => {
    const rows = el.parentElement ? el.parentElement.closest("[data-rows]") : null;
    return rows === null || rows === root || !root.contains(rows);
  });
}

export function fill(root, data) {
  for (const el of own(root, "[data-field]")) {
    const text = format(lookup(data, el.dataset.field), el.dataset.format);
    if (el.textContent !== text) el.textContent = text;
    if ("badge" in el.dataset) el.className = `badge badge-${slug(text)}`;
  }
  for (const el of own(root, "[data-href]")) {
    const href = lookup(data, el.dataset.href);
    // Only a path on this coordinator: never a javascript: or outside URL from the data.
    if (typeof href === "string" && href.startsWith("/") && !href.startsWith("//")) {
      el.setAttribute("href", href);
    }
  }
  for (const el of own(root, "[data-show-if]")) {
    el.hidden = !lookup(data, el.dataset.showIf);
  }
  for (const el of own(root, "[data-hide-if]")) {
    el.hidden = Boolean(lookup(data, el.dataset.hideIf));
  }
  for (const el of own(root, "[data-list]")) {
    const items = lookup(data, el.dataset.list) || [];
    el.replaceChildren(
      ...items.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
  }
}

function emptyRow(container) {
  const text = container.dataset.empty || "Nothing yet.";
  if (container.tagName === "TBODY") {
    const row = document.createElement("tr");
    row.className = "empty";
    const cell = document.createElement("td");
    cell.colSpan = Number(container.dataset.columns || 1);
    cell.textContent = text;
    row.append(cell);
    return row;
  }
  const item = document.createElement(container.tagName === "UL" ? "li" : "p");
  item.className = container.tagName === "UL" ? "empty" : "empty card";
  item.textContent = text;
  return item;
}

// A row and the lists of rows nested in it (a node's probes, a job's runs).
function fillItem(item, row) {
  fill(item, row);
  fillAllRows(item, row);
}

export function fillRows(container, rows) {
  const snapshot = JSON.stringify(rows);
  if (container.dataset.snapshot === snapshot) return; // unchanged: keep the reader's place
  container.dataset.snapshot = snapshot;
  // With data-key, rows that are still the same ones (same keys, same order) are updated in
  // place, so a chart or an opened <details> inside them stays.
  const key = container.dataset.key;
  const current = [...container.children].filter((el) => el.dataset.rowKey !== undefined);
  if (
    key &&
    rows.length > 0 &&
    current.length === rows.length &&
    current.every((el, i) => el.dataset.rowKey === String(rows[i][key]))
  ) {
    current.forEach((el, i) => fillItem(el, rows[i]));
    return;
  }
  const template = document.getElementById(container.dataset.template);
  const made = rows.map((row) => {
    const item = template.content.firstElementChild.cloneNode(true);
    if (key) item.dataset.rowKey = String(row[key]);
    fillItem(item, row);
    return item;
  });
  container.replaceChildren(...(made.length ? made : [emptyRow(container)]));
}

export function fillAllRows(root, data) {
  for (const container of own(root, "[data-rows]")) {
    fillRows(container, lookup(data, container.dataset.rows) || []);
  }
}

export function hourLabels(starts) {
  return starts.map((start) => `${new Date(start).toISOString().slice(11, 16)}`);
}

function chartMissing(canvas) {
  const note = document.createElement("p");
  note.className = "muted small";
  note.textContent = "Charts are unavailable: Chart.js is not installed on this coordinator (npm ci).";
  canvas.replaceWith(note);
}

// A bar chart (with optional line datasets on a second axis), or an updated one.
export function drawChart(
  canvas,
  existing,
  { labels, datasets, formatY, horizontal = false, stacked = false, counts = false, secondAxis = null },
) {
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets.forEach((dataset, i) => {
      dataset.data = datasets[i].data;
    });
    existing.update("none");
    return existing;
  }
  if (!window.Chart) {
    chartMissing(canvas);
    return null;
  }
  const valueAxis = horizontal ? "x" : "y";
  const categoryAxis = horizontal ? "y" : "x";
  const scales = {
    [valueAxis]: {
      beginAtZero: true,
      stacked,
      ticks: { callback: (value) => formatY(value), ...(counts ? { precision: 0 } : {}) },
    },
    [categoryAxis]: { stacked },
  };
  if (secondAxis) {
    scales.y1 = {
      beginAtZero: true,
      position: "right",
      ticks: { precision: 0 },
      grid: { drawOnChartArea: false },
      title: { display: true, text: secondAxis },
    };
  }
  const chart = new window.Chart(canvas, {
    type: "bar",
    data: { labels, datasets },
    options: {
      indexAxis: horizontal ? "y" : "x",
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales,
      plugins: {
        legend: { display: datasets.length > 1 },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const value = horizontal ? ctx.parsed.x : ctx.parsed.y;
              return `${ctx.dataset.label}: ${ctx.dataset.yAxisID === "y1" ? value : formatY(value)}`;
            },
          },
        },
      },
    },
  });
  canvas.dataset.rendered = "true";
  return chart;
}

// A line chart of values from 0 to 1 shown as percent (trust over time), or an updated one.
export function drawLine(canvas, existing, { labels, values, label, color }) {
  if (existing && existing.canvas === canvas) {
    existing.data.labels = labels;
    existing.data.datasets[0].data = values;
    existing.update("none");
    return existing;
  }
  if (existing) existing.destroy(); // its row was rebuilt: the canvas is a new one
  if (!window.Chart) {
    chartMissing(canvas);
    return null;
  }
  const chart = new window.Chart(canvas, {
    type: "line",
    data: {
      labels,
      datasets: [{ label, data: values, borderColor: color, backgroundColor: color, pointRadius: 2, stepped: false }],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: {
        y: { min: 0, max: 1, ticks: { callback: (value) => `${Math.round(value * 100)}%` } },
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 6 } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (ctx) => `${label}: ${Math.floor(ctx.parsed.y * 100)}%` } },
      },
    },
  });
  canvas.dataset.rendered = "true";
  return chart;
}

// "MM-DD HH:MM" in UTC, for points in time that span days.
export function timeLabels(times) {
  return times.map((time) => new Date(time).toISOString().slice(5, 16).replace("T", " "));
}

// Fetch the page's JSON now and every POLL_MS while the page is visible; back off on errors
// and stop when the session has ended.
export function poll(onData) {
  const url = document.getElementById("main").dataset.source;
  const status = document.getElementById("live-status");
  let delay = POLL_MS;
  async function tick() {
    if (document.hidden) {
      setTimeout(tick, POLL_MS);
      return;
    }
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401 || response.status === 403) {
        status.textContent = "Your session has ended: log in again to keep this page up to date.";
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      onData(await response.json());
      document.body.dataset.updated = new Date().toISOString();
      status.textContent = `Live: updated ${new Date().toISOString().slice(11, 19)} UTC, every ${POLL_MS / 1000} s`;
      delay = POLL_MS;
    } catch (error) {
      status.textContent = `Live updates paused (${error.message}); retrying.`;
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
    setTimeout(tick, delay);
  }
  tick();
}
