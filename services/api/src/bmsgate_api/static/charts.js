// Charts of the archive with uPlot (served from /vendor/uplot, installed by npm ci).
"use strict";
const charts = (() => {
  // one palette per theme, every entry at least 4.3:1 against its card (#fff / #181c22), so each
  // line stands out of the background (WCAG asks 3:1 of graphics)
  const palettes = {
    light: ["#d62728", "#1f77b4", "#2b8a3e", "#c2410c", "#7b3fa0", "#0b7285", "#c2255c", "#8a5a00",
      "#2f6f5e", "#9c1c1c", "#5c6b00", "#1c3aa9", "#6741d9", "#a61e4d", "#495057", "#0c8599"],
    dark: ["#ff6b6b", "#4dabf7", "#51cf66", "#ff922b", "#cc5de8", "#22d3ee", "#f783ac", "#e0b35a",
      "#63e6be", "#ffa8a8", "#c0eb75", "#91a7ff", "#b197fc", "#ffd43b", "#ced4da", "#66d9e8"],
  };
  const list = [];  // every chart on the page: { chart, el, spec } (spec rebuilds it)

  function theme() {
    const set = document.documentElement.dataset.theme;
    return set || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  }
  const palette = () => palettes[theme()];

  // a series' colour: a palette index, or a custom property of style.css ("--chg")
  function colour(c) {
    if (typeof c === "number") return palette()[c % 16];
    return c && c.startsWith("--") ? bms.css(c) : c;
  }

  // the archive's series: over the last ``range`` hours, or { start, end } [ms since 1970]
  async function history(pack, fields, range = 24) {
    const q = typeof range === "number" ? new URLSearchParams({ hours: String(range) })
      : new URLSearchParams({ start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString() });
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
    const out = [{ stroke, grid, ticks: grid, values: times }, left];
    if (unitRight) out.push({ scale: "right", side: 1, stroke, grid: { show: false }, label: unitRight, size: 50 });
    return out;
  }

  // the time axis in bms.when's format (uPlot's own would be a third style): "17:42", with the
  // date under the first tick of each day (not the last tick: it would be cut at the edge), or
  // only dates when the ticks are a day or more apart
  function times(u, splits, axis, space, incr) {
    let day = null;
    return splits.map((s, i) => {
      const [d, t] = bms.when(s * 1e3, { seconds: incr < 60 }).split(" ");
      if (incr >= 86400) return d;
      const label = d !== day && (i === 0 || i < splits.length - 1) ? `${t}\n${d}` : t;
      day = d;
      return label;
    });
  }

  // a y range at least ``span`` wide around the data, so a flat line is not blown up to noise
  function atLeast(span) {
    return (u, min, max) => {
      if (min === null || max === null) return [0, span];
      const mid = (min + max) / 2, half = Math.max((max - min) * 0.55, span / 2);
      return [mid - half, mid + half];
    };
  }

  // Gaps drawn as gaps, where the history service says there is no data (its reply's ``gaps``,
  // the one gap rule: docs/history.md): a sample inside a gap (a bank while a member is away) is
  // null, and a null row in each gap breaks the line instead of running straight across it.
  // ``data`` is [times [s], ...columns]; ``holes`` the reply's [{ start, end }] (ISO times).
  function gaps(data, holes = []) {
    const [times, ...columns] = data;
    const spans = holes.map(g => [Date.parse(g.start) / 1000, Date.parse(g.end) / 1000]);
    const inside = (t) => spans.some(([s, e]) => t > s && t < e);
    const rows = times.map((t, i) => [t, inside(t) ? null : i]);
    for (const [s, e] of spans) if (!times.some(t => t > s && t < e)) rows.push([(s + e) / 2, null]);
    rows.sort((a, b) => a[0] - b[0]);
    return [rows.map(r => r[0]), ...columns.map(c => rows.map(([, i]) => i === null ? null : (c[i] ?? null)))];
  }

  // the cells at the cursor (or the latest sample): the spread and which cell is lowest/highest
  function cellsAt(data, idx) {
    let lo = null, hi = null;
    for (let k = 1; k < data.length; k++) {
      const v = data[k][idx];
      if (v === null || v === undefined) continue;
      if (lo === null || v < data[lo][idx]) lo = k;
      if (hi === null || v > data[hi][idx]) hi = k;
    }
    if (lo === null) return null;
    return { delta: data[hi][idx] - data[lo][idx], min: data[lo][idx], minCell: lo, max: data[hi][idx], maxCell: hi };
  }

  function readout(u, el) {
    const data = u.data;
    let idx = u.cursor.idx;
    if (idx === null || idx === undefined) {  // off the chart: the latest sample with cells
      idx = data[0].length - 1;
      while (idx > 0 && cellsAt(data, idx) === null) idx--;
    }
    const c = idx >= 0 ? cellsAt(data, idx) : null;
    el.dataset.idx = c ? String(idx) : "";
    const name = (k) => u.series[k].label.replace(/^Cell /, "cell ");
    el.textContent = c ? `Δ ${(c.delta * 1000).toFixed(1)} mV · min ${c.min.toFixed(3)} V (${name(c.minCell)})`
      + ` · max ${c.max.toFixed(3)} V (${name(c.maxCell)})` : "Δ –";
    if (c) el.dataset.delta = c.delta.toFixed(4);
  }

  // zooming one chart zooms the others of the page the same way
  let syncing = false;
  function zoomed(u) {
    if (syncing) return;
    syncing = true;
    const { min, max } = u.scales.x;
    for (const entry of list) if (entry.chart && entry.chart !== u) entry.chart.setScale("x", { min, max });
    syncing = false;
  }

  // the series hidden in the legend (by label), kept when a chart is drawn again
  const hiddenIn = (entry) => new Set(entry.chart ? entry.chart.series.filter(s => !s.show).map(s => s.label) : []);

  function build(entry, keepX, hidden = new Set()) {
    const { el, spec } = entry;
    const { title, series, data, opts } = spec;
    el.innerHTML = "";
    const hooks = { setScale: [(u, key) => { if (key === "x") zoomed(u); }] };
    let out;
    if (opts.cells) {
      out = document.createElement("p");
      out.className = "cell-readout muted";
      hooks.setCursor = [(u) => readout(u, out)];
      hooks.ready = [(u) => readout(u, out)];
    }
    syncing = true;  // a new chart's first scale is its own, not a zoom
    const chart = new uPlot({
      title, width: width(el), height: opts.height || 320,
      // a double-click zooms out to the whole window, as Reset zoom (not to the data's span)
      cursor: { sync: { key: "bms" }, drag: { x: true, y: false },
        bind: { dblclick: () => () => { resetZoom(); return null; } } },
      ...(bms.zone() ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), bms.zone()) } : {}),  // the site's zone
      legend: { live: true },
      // the window asked for, not the data's own span; a range function would also undo a zoom
      scales: { x: { time: true, ...(opts.x ? { auto: false, min: opts.x[0], max: opts.x[1] } : {}) }, ...(opts.scales || {}) },
      axes: axes(opts.unit, opts.unitRight, opts.digits),
      series: [{ value: (u, v) => v === null ? "–" : bms.when(v * 1e3) }, ...series.map(s => {
        const stroke = colour(s.color);
        const { color, fill, ...rest } = s;
        return { ...rest, stroke, show: !hidden.has(s.label), ...(fill ? { fill: stroke + fill } : {}) };
      })],
      hooks,
    }, data, el);
    syncing = false;
    if (out) el.append(out);
    entry.chart = chart;
    if (keepX) chart.setScale("x", keepX);
    return chart;
  }

  // A chart in ``el``: ``series`` as uPlot's, with ``color`` a palette index or a custom property
  // and ``fill`` an alpha suffix ("44"); opts: unit, unitRight, digits, height, x (the full range
  // [s]), scales, gaps (the reply's), cells (a cell spread readout under it), keepZoom.
  function make(el, title, series, data, opts = {}) {
    let entry = list.find(e => e.el === el);
    const x = entry && opts.keepZoom && zoomedX(entry) ? { ...entry.chart.scales.x } : null;
    const hidden = entry && opts.keepZoom ? hiddenIn(entry) : new Set();  // a refresh keeps them
    if (entry) entry.chart.destroy();
    else { entry = { el }; list.push(entry); }
    entry.spec = { title, series, data: gaps(data, opts.gaps), opts };
    return build(entry, x, hidden);
  }

  function full(entry) {
    const { data, opts } = entry.spec;
    if (opts.x) return { min: opts.x[0], max: opts.x[1] };
    const t = data[0];
    return t.length ? { min: t[0], max: t[t.length - 1] } : null;
  }

  function zoomedX(entry) {
    const f = full(entry), x = entry.chart.scales.x;
    return f !== null && x.min !== null && (Math.abs(x.min - f.min) > 1 || Math.abs(x.max - f.max) > 1);
  }

  // back to each chart's whole range
  function resetZoom() {
    syncing = true;
    for (const entry of list) { const f = full(entry); if (f) entry.chart.setScale("x", f); }
    syncing = false;
  }

  // the theme changed (the toggle, or the system's): every chart drawn again in its colours
  function recolour() {
    for (const entry of list) {
      const x = zoomedX(entry) ? { ...entry.chart.scales.x } : null;
      const hidden = hiddenIn(entry);
      entry.chart.destroy();
      build(entry, x, hidden);
    }
  }
  new MutationObserver(recolour).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", recolour);

  addEventListener("resize", () => { for (const { chart, el } of list) chart.setSize({ width: width(el), height: chart.height }); });

  // the x range [start, end] in seconds: the window asked for, or, when the data starts later
  // (a new install), from the first sample on, with a note that says so instead of a sliver
  function window(hours, times = []) {
    const end = Date.now() / 1000, start = end - hours * 3600;
    const first = times.length ? times[0] : null;
    if (first === null || first <= start + 0.05 * hours * 3600) return { x: [start, end], note: "" };
    const since = bms.when(first * 1000, { seconds: false });
    const last = Math.max(end, times[times.length - 1]);
    return { x: [Math.min(first, last - 10), last], note: ` · data since ${since}` };  // ≥ 10 s wide
  }

  // the cells' names: "Cell 7", or for a bank "West 3" (its cells are its members' in order,
  // when the members counted now add up to ``count``; else numbered through)
  async function cellNames(pack, count) {
    const numbered = Array.from({ length: count }, (_, i) => `Cell ${i + 1}`);
    let view;
    try { view = (await bms.api("api/banks")).find(v => v.pack === pack); } catch (e) { return numbered; }
    const members = (view && view.members) || [];
    if (!members.length || members.reduce((n, m) => n + m.cells, 0) !== count) return numbered;
    return members.flatMap(m => Array.from({ length: m.cells }, (_, i) => `${m.name} ${i + 1}`));
  }

  // charts of a window that ends now are read again this often ([ms]; ``fn`` null: not at all)
  const REFRESH = 60_000;
  let timer = null;
  function again(fn) {
    clearTimeout(timer);
    timer = fn ? setTimeout(fn, REFRESH) : null;
  }

  // a series of a reply by name ([] when the reply has none)
  const values = (reply, name) => (reply.series.find(s => s.name === name) || { values: [] }).values;

  const charts = () => list.map(e => e.chart);
  return { history, make, gaps, cellsAt, cellNames, palette, palettes, theme, window, atLeast, resetZoom, values, again, charts };
})();
