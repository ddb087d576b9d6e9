// The streamer's page: each stream's state, nodes, invites, viewers and bytes per hour.
import { COLORS, drawChart, fill, fillAllRows, formatBytes, hourLabels, poll } from "./common.js";

const charts = new Map();

function sectionOf(name) {
  return [...document.querySelectorAll("section[data-stream]")].find(
    (section) => section.dataset.stream === name,
  );
}

poll((data) => {
  fill(document.getElementById("totals"), data);
  for (const stream of data.streams) {
    const section = sectionOf(stream.name);
    if (!section) continue; // created since the page loaded: it appears on the next reload
    fill(section, stream);
    fillAllRows(section, stream);
    const datasets = [
      { label: "From friend nodes", data: stream.friend_bytes_by_hour.values, backgroundColor: COLORS.friend, stack: "bytes" },
      { label: "From the origin", data: stream.origin_bytes_by_hour, backgroundColor: COLORS.origin, stack: "bytes" },
    ];
    const canvas = section.querySelector("canvas.hourly");
    charts.set(
      stream.name,
      drawChart(canvas, charts.get(stream.name), {
        labels: hourLabels(stream.friend_bytes_by_hour.starts),
        datasets,
        formatY: formatBytes,
        stacked: true,
      }),
    );
  }
});
