// The public page: live streams and the leaderboard of friends, refreshed every few seconds.
import { COLORS, drawChart, fillAllRows, formatBytes, poll } from "./common.js";

const main = document.getElementById("main");
const canvas = document.getElementById("leaderboard-chart");
let chart = null;

poll((data) => {
  fillAllRows(main, data);
  chart = drawChart(canvas, chart, {
    labels: data.leaderboard.map((entry) => entry.display_name),
    datasets: [
      {
        label: "Delivered",
        data: data.leaderboard.map((entry) => entry.delivered_bytes),
        backgroundColor: COLORS.friend,
      },
    ],
    formatY: formatBytes,
    horizontal: true,
  });
});
