// The friend's page: their nodes, reachability advice and bytes delivered per hour.
import { COLORS, drawChart, fill, fillAllRows, formatBytes, hourLabels, poll } from "./common.js";

const main = document.getElementById("main");
const canvas = main.querySelector("canvas.hourly");
let chart = null;

poll((data) => {
  fill(document.getElementById("totals"), data);
  fillAllRows(main, data);
  chart = drawChart(canvas, chart, {
    labels: hourLabels(data.delivered_by_hour.starts),
    datasets: [{ label: "Delivered", data: data.delivered_by_hour.values, backgroundColor: COLORS.friend }],
    formatY: formatBytes,
  });
});
