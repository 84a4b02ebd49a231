// Charts of the archive with uPlot (served from /vendor/uplot, installed by npm ci).
"use strict";
const charts = (() => {
  const palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
    "#469990", "#800000", "#808000", "#000075", "#bfef45", "#fabed4", "#a9a9a9", "#dcbeff"];
  const list = [];

  async function history(pack, fields, hours = 24) {
    const q = new URLSearchParams({ hours: String(hours) });
    for (const f of fields) q.append("fields", f);
    return bms.api(`api/packs/${encodeURIComponent(pack)}/history?${q}`);
  }

  function width(el) { return Math.max(280, el.clientWidth); }

  // tick steps no finer than the labels' last digit, so no label repeats (cells 0.2 mV apart)
  function steps(digits) {
    const out = [];
    for (let e = -digits; e <= 6; e++) for (const m of [1, 2, 5]) out.push(+(m * 10 ** e).toFixed(digits));
    return out;
  }

  function axes(unitLeft, unitRight, digits) {
    const grid = { stroke: bms.css("--line"), width: 1 };
    const stroke = bms.css("--muted");
    const left = { stroke, grid, ticks: grid, label: unitLeft, size: 60 };
    if (digits !== undefined) {
      left.values = (u, vals) => vals.map(v => v.toFixed(digits));
      left.incrs = steps(digits);
    }
    const out = [{ stroke, grid, ticks: grid }, left];
    if (unitRight) out.push({ scale: "right", side: 1, stroke, grid: { show: false }, label: unitRight, size: 50 });
    return out;
  }

  // a y range at least ``span`` wide around the data, so a flat line is not blown up to noise
  function atLeast(span) {
    return (u, min, max) => {
      if (min === null || max === null) return [0, span];
      const mid = (min + max) / 2, half = Math.max((max - min) * 0.55, span / 2);
      return [mid - half, mid + half];
    };
  }

  // gaps drawn as gaps: a null row between two samples farther apart than GAP times the usual
  // step (the median), so an outage is a break in the line, not a diagonal across it
  const GAP = 3;
  function gaps(data) {
    const [times, ...columns] = data;
    if (times.length < 3) return data;
    const steps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    const limit = GAP * steps[Math.floor(steps.length / 2)];
    const out = [[times[0]], ...columns.map(c => [c[0] ?? null])];
    for (let i = 1; i < times.length; i++) {
      if (times[i] - times[i - 1] > limit) {
        out[0].push((times[i] + times[i - 1]) / 2);
        for (let k = 0; k < columns.length; k++) out[k + 1].push(null);
      }
      out[0].push(times[i]);
      for (let k = 0; k < columns.length; k++) out[k + 1].push(columns[k][i] ?? null);
    }
    return out;
  }

  function make(el, title, series, data, opts = {}) {
    el.innerHTML = "";
    data = gaps(data);
    const chart = new uPlot({
      title, width: width(el), height: opts.height || 320,
      cursor: { sync: { key: "bms" }, drag: { x: true, y: false } },
      ...(bms.zone() ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), bms.zone()) } : {}),  // the site's zone
      legend: { live: true },
      scales: { x: { time: true, ...(opts.x ? { range: () => opts.x } : {}) }, ...(opts.scales || {}) },
      axes: axes(opts.unit, opts.unitRight, opts.digits),
      series: [{}, ...series],
    }, data, el);
    list.push([chart, el]);
    return chart;
  }

  addEventListener("resize", () => { for (const [c, el] of list) c.setSize({ width: width(el), height: c.height }); });

  // the x range [start, end] in seconds: the window asked for, or, when the data starts later
  // (a new install), from the first sample on, with a note that says so instead of a sliver
  function window(hours, times = []) {
    const end = Date.now() / 1000, start = end - hours * 3600;
    const first = times.length ? times[0] : null;
    if (first === null || first <= start + 0.05 * hours * 3600) return { x: [start, end], note: "" };
    const hhmm = bms.hhmm(first * 1000);
    const last = Math.max(end, times[times.length - 1]);
    return { x: [Math.min(first, last - 10), last], note: ` · data since ${hhmm}` };  // ≥ 10 s wide
  }

  return { history, make, gaps, palette, window, atLeast };
})();
