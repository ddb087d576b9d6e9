// The operator's page: economics, money, jobs, trust, discrepancies, failed probes, flagged
// nodes, every stream and node, errors per hour.
import { COLORS, drawChart, fill, fillAllRows, hourLabels, poll } from "./common.js";

const main = document.getElementById("main");
const canvas = document.getElementById("errors-chart");
let chart = null;

poll((data) => {
  fill(main, data);
  fillAllRows(main, data);
  const rates = data.error_rates;
  chart = drawChart(canvas, chart, {
    labels: hourLabels(rates.starts),
    datasets: [
      { label: "Integrity failures", data: rates.integrity_failures, backgroundColor: COLORS.integrity },
      { label: "Reachability failures", data: rates.reachability_failures, backgroundColor: COLORS.reachability },
      {
        label: "Usage reports",
        data: rates.usage_reports,
        type: "line",
        yAxisID: "y1",
        borderColor: COLORS.reports,
        backgroundColor: COLORS.reports,
        pointRadius: 2,
      },
    ],
    formatY: (value) => String(value),
    counts: true,
    secondAxis: "usage reports",
  });
});
