// The friend's page: their nodes with trust, checks, reconciled intervals and earnings, the
// statement, and bytes delivered per hour.
import {
  COLORS,
  drawChart,
  drawLine,
  fill,
  fillAllRows,
  formatBytes,
  hourLabels,
  poll,
  timeLabels,
} from "./common.js";

const main = document.getElementById("main");
const canvas = main.querySelector("canvas.hourly");
let chart = null;
const trustCharts = new Map();

function cardOf(id) {
  return [...main.querySelectorAll("article.node")].find((card) => card.dataset.rowKey === id);
}

poll((data) => {
  for (const id of ["alerts", "totals", "earnings"]) fill(document.getElementById(id), data);
  fillAllRows(main, data);
  chart = drawChart(canvas, chart, {
    labels: hourLabels(data.delivered_by_hour.starts),
    datasets: [{ label: "Delivered", data: data.delivered_by_hour.values, backgroundColor: COLORS.friend }],
    formatY: formatBytes,
  });
  for (const node of data.nodes) {
    const card = cardOf(node.id);
    const trustCanvas = card ? card.querySelector("canvas.trust-chart") : null;
    if (!trustCanvas) continue;
    const points = node.trust_history;
    trustCharts.set(
      node.id,
      drawLine(trustCanvas, trustCharts.get(node.id), {
        labels: timeLabels(points.map((p) => p.at)),
        values: points.map((p) => p.score),
        label: "Trust",
        color: COLORS.friend,
      }),
    );
  }
});
