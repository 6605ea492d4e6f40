// The rule workbench's charts: a condition's value per token with its
// threshold, and a rule's firing rate on benign vs detection on positives.
import { charts, COLORS, fmt } from "./api.js";

/** Draw one condition along a request; returns its disposer. */
export function conditionChart(box, tokens, c) {
  const ec = charts();
  if (!ec) return () => {};
  const chart = ec.init(box, null, { renderer: "canvas" });
  const firedAt = new Set(c.firedAt ?? []);
  chart.setOption({
    animation: false,
    grid: { left: 40, right: 16, top: 12, bottom: 36 },
    tooltip: {
      trigger: "axis",
      valueFormatter: (v) => fmt(v),
    },
    xAxis: {
      type: "category",
      data: (c.values ?? []).map((_, i) => String(i)),
      axisLabel: { formatter: (v) => tokens[Number(v)] ?? v, rotate: 45, fontSize: 10 },
    },
    yAxis: { type: "value", splitNumber: 3 },
    series: [{
      type: "line",
      name: c.name,
      data: (c.values ?? []).map((v, i) => ({
        value: v,
        symbolSize: firedAt.has(i) ? 9 : 3,
        itemStyle: { color: firedAt.has(i) ? COLORS.alert : COLORS.line },
      })),
      lineStyle: { color: COLORS.line },
      markLine: {
        silent: true,
        symbol: "none",
        lineStyle: { color: COLORS.threshold, type: "dashed" },
        label: { position: "insideEndTop", formatter: `${c.op ?? ""} ${fmt(c.threshold)}` },
        data: typeof c.threshold === "number" ? [{ yAxis: c.threshold }] : [],
      },
    }],
  });
  box.dataset.drawn = "1";
  return () => chart.dispose();
}

/** Draw a rule's curve; returns its disposer. */
export function curveChart(box, curve) {
  const ec = charts();
  if (!ec) return () => {};
  const chart = ec.init(box, null, { renderer: "canvas" });
  const pts = curve.points ?? [];
  chart.setOption({
    animation: false,
    title: {
      text: `${curve.rule}: by threshold`,
      subtext: pts.some((p) => typeof p.detection === "number")
        ? ""
        : "no positives: detection needs request ids marked as positives",
      left: 8,
      top: 4,
      textStyle: { fontSize: 13 },
    },
    legend: { top: 26, right: 10 },
    grid: { left: 50, right: 20, top: 60, bottom: 40 },
    tooltip: { trigger: "axis", valueFormatter: (v) => fmt(v) },
    xAxis: { type: "value", name: "threshold", nameLocation: "middle", nameGap: 26 },
    yAxis: { type: "value", min: 0, max: 1 },
    series: [
      {
        type: "line",
        name: "firing rate on benign",
        data: pts.map((p) => [p.threshold, p.benignRate]),
        lineStyle: { color: COLORS.alert },
        itemStyle: { color: COLORS.alert },
      },
      {
        type: "line",
        name: "detection on positives",
        data: pts.map((p) => [p.threshold, p.detection]),
        lineStyle: { color: COLORS.benign },
        itemStyle: { color: COLORS.benign },
      },
    ],
  });
  box.dataset.drawn = "1";
  return () => chart.dispose();
}
