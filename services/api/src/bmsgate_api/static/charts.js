// Charts of the archive with uPlot (served from /vendor/uplot, installed by npm ci).
"use strict";
const charts = (() => {
  const palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
    "#469990", "#800000", "#808000", "#000075", "#bfef45", "#fabed4", "#a9a9a9", "#dcbeff"];
  const list = [];

  async function history(pack, fields, hours = 24) {
    const q = new URLSearchParams({ hours: String(hours) });
    for (const f of fields) q.append("fields", f);
    return bms.api(`/api/packs/${encodeURIComponent(pack)}/history?${q}`);
  }

  function width(el) { return Math.max(280, el.clientWidth); }

  function axes(unitLeft, unitRight, digits) {
    const grid = { stroke: bms.css("--line"), width: 1 };
    const stroke = bms.css("--muted");
    const left = { stroke, grid, ticks: grid, label: unitLeft, size: 60 };
    if (digits !== undefined) left.values = (u, vals) => vals.map(v => v.toFixed(digits));
    const out = [{ stroke, grid, ticks: grid }, left];
    if (unitRight) out.push({ scale: "right", side: 1, stroke, grid: { show: false }, label: unitRight, size: 50 });
    return out;
  }

  function make(el, title, series, data, opts = {}) {
    el.innerHTML = "";
    const chart = new uPlot({
      title, width: width(el), height: opts.height || 320,
      cursor: { sync: { key: "bms" }, drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true, ...(opts.x ? { range: () => opts.x } : {}) }, ...(opts.scales || {}) },
      axes: axes(opts.unit, opts.unitRight, opts.digits),
      series: [{}, ...series],
    }, data, el);
    list.push([chart, el]);
    return chart;
  }

  addEventListener("resize", () => { for (const [c, el] of list) c.setSize({ width: width(el), height: c.height }); });

  // the window asked for, [start, end] in seconds, so a short history still shows the whole day
  function window(hours) { const end = Date.now() / 1000; return [end - hours * 3600, end]; }

  return { history, make, palette, window };
})();
