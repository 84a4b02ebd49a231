// The Energy page: energy in and out per day of a month or per month of a year, as bars and a
// table, from GET api/packs/{pack}/energy/days/{YYYY-MM} and .../months/{YYYY} (the history
// service's daily figures; a bank is its members summed once each, by the API).
"use strict";
const energy = (() => {
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const $ = (id) => document.getElementById(id);
  const view = { by: "day", period: "", report: null, chart: null };

  // the site's month and year now (its zone, not the browser's)
  function sitePeriod(by) {
    const parts = new Intl.DateTimeFormat("en", { timeZone: bms.zone(), year: "numeric", month: "2-digit" })
      .formatToParts(Date.now());
    const part = (type) => parts.find(p => p.type === type).value;
    return by === "month" ? part("year") : `${part("year")}-${part("month")}`;
  }

  function periodName(by, period) {
    if (by === "month") return period;
    const [year, month] = period.split("-");
    return `${MONTHS[Number(month) - 1]} ${year}`;
  }

  // a row's label: the day of the month, or the month's short name
  const label = (by, period) => by === "month" ? MONTHS[Number(period.slice(5, 7)) - 1] : String(Number(period.slice(8)));
  const kwh = (v) => v === null || v === undefined ? "–" : v.toFixed(2);

  function note(r, report) {
    if (r.future) return "";
    if (!r.days) return "no data";
    if (r.missing && r.missing.length) return `without ${r.missing.join(", ")}`;
    if (report.by === "month") return `${r.days} day${r.days === 1 ? "" : "s"}`;
    return "";
  }

  function table(report) {
    const unit = report.by === "month" ? "Month" : "Day";
    $("unit-col").textContent = unit;
    $("caption").textContent = `${report.name}: energy per ${unit.toLowerCase()}, ${periodName(report.by, report.period)}`;
    $("figures").tBodies[0].innerHTML = report.rows.map(r => `<tr class="${r.days ? "" : "absent"}${r.future ? " future" : ""}" data-period="${r.period}">
      <th scope="row">${label(report.by, r.period)}</th><td class="num">${kwh(r.energy_in)}</td>
      <td class="num">${kwh(r.energy_out)}</td><td>${bms.esc(note(r, report))}</td></tr>`).join("");
    $("figures").tFoot.innerHTML = `<tr><th scope="row">Total</th><td class="num">${kwh(report.energy_in)}</td>
      <td class="num">${kwh(report.energy_out)}</td><td></td></tr>`;
  }

  function width(el) { return Math.max(280, el.clientWidth); }

  // bars: in above the zero line, out below it; no bar where there is no data, and a grey dot
  // on the line for such a row, so "offline" is not read as "nothing moved"
  function chart(report) {
    const el = $("bars");
    el.innerHTML = "";
    const n = report.rows.length;
    const xs = report.rows.map((_, i) => i + 1);
    const ins = report.rows.map(r => r.energy_in);
    const outs = report.rows.map(r => r.energy_out === null ? null : -r.energy_out);
    const absent = report.rows.map(r => r.days || r.future ? null : 0);
    const bars = uPlot.paths.bars({ size: [0.7, 48] });
    const grid = { stroke: bms.css("--line"), width: 1 };
    const stroke = bms.css("--muted");
    // the legend: the row under the cursor (nothing while the cursor is elsewhere)
    const values = (sign) => (u, v, s, i) => i === null || i === undefined ? ""
      : v === null || v === undefined ? (report.rows[i].future ? "" : "no data") : `${(sign * v).toFixed(2)} kWh`;
    const range = (u, min, max) => {
      const lo = Math.min(0, min ?? 0), hi = Math.max(0, max ?? 0);
      const pad = Math.max((hi - lo) * 0.08, 0.05);
      return [lo === 0 ? -pad : lo - pad, hi === 0 ? pad : hi + pad];
    };
    view.chart = new uPlot({
      width: width(el), height: 300,
      legend: { live: true },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: false, range: [0.5, n + 0.5] }, y: { range } },
      axes: [
        { stroke, grid: { show: false }, ticks: grid, incrs: [1, 2, 3, 5, 10],
          values: (u, vals) => vals.map(v => Number.isInteger(v) && v >= 1 && v <= n ? label(report.by, report.rows[v - 1].period) : "") },
        // as many decimals as the step between ticks needs, so no two labels read the same
        { stroke, grid, ticks: grid, label: "kWh", size: 56,
          values: (u, vals, axis, space, incr) => vals.map(v => Math.abs(v).toFixed(Math.min(3, Math.max(0, -Math.floor(Math.log10(incr)))))) },
      ],
      series: [
        { label: report.by === "month" ? "Month" : "Day", value: (u, v) => v === null || v === undefined ? "" : report.rows[v - 1].period },
        { label: "In", fill: bms.css("--chg"), stroke: bms.css("--chg"), width: 0, paths: bars, fillTo: 0,
          points: { show: false }, value: values(1) },
        { label: "Out", fill: bms.css("--dsg"), stroke: bms.css("--dsg"), width: 0, paths: bars, fillTo: 0,
          points: { show: false }, value: values(-1) },
        { label: "No data", stroke, paths: () => null, points: { show: true, size: 7, fill: stroke, stroke },
          value: (u, v) => v === null || v === undefined ? "" : "yes" },
      ],
    }, [xs, ins, outs, absent], el);
  }

  function show(report) {
    view.report = report;
    const kind = report.bank ? `bank of ${report.members.join(", ")}` : "pack";
    $("title").textContent = `${report.name} · ${periodName(report.by, report.period)}`;
    $("totals").innerHTML = `<span>${bms.esc(kind)}</span><span class="in">▲ in <b>${kwh(report.energy_in)} kWh</b></span>
      <span class="out">▼ out <b>${kwh(report.energy_out)} kWh</b></span>`;
    // the file of exactly this answer: the API writes the same report as CSV
    const csv = $("csv");
    csv.href = `api/packs/${encodeURIComponent(report.pack)}/energy/${report.by === "month" ? "months" : "days"}/${report.period}.csv`;
    csv.title = `${report.pack}_energy_${report.period}.csv`;
    csv.hidden = false;
    $("prev").disabled = !report.previous;
    $("next").disabled = !report.next;
    table(report);
    chart(report);
  }

  async function load() {
    const pack = $("pack").value, msg = $("msg");
    msg.hidden = true;
    $("csv").hidden = true;  // until the period asked for is shown
    $("period").textContent = periodName(view.by, view.period);
    for (const b of document.querySelectorAll("[data-by]")) b.setAttribute("aria-pressed", String(b.dataset.by === view.by));
    $("prev").setAttribute("aria-label", view.by === "month" ? "Previous year" : "Previous month");
    $("next").setAttribute("aria-label", view.by === "month" ? "Next year" : "Next month");
    const q = new URLSearchParams({ pack, [view.by === "month" ? "year" : "month"]: view.period });
    history.replaceState(null, "", `?${q}`);  // a link to this view
    if (!pack) { bms.message(msg, "No pack has reported yet.", false); return; }
    const path = view.by === "month" ? `months/${view.period}` : `days/${view.period}`;
    try {
      show(await bms.api(`api/packs/${encodeURIComponent(pack)}/energy/${path}`));
    } catch (err) { bms.message(msg, err.message, false); }
  }

  function step(where) {
    const to = view.report && view.report[where];
    if (to) { view.period = to; load(); }
  }

  // every pack seen and every configured bank (a bank may not have been published yet)
  async function choices() {
    const [list, banks] = await Promise.all([bms.packs(), bms.api("api/banks").catch(() => [])]);
    const seen = new Set(list.map(p => p.pack));
    return [...list, ...banks.filter(b => !seen.has(b.pack)).map(b => ({ pack: b.pack, name: b.name, bank: true }))];
  }

  async function start() {
    await bms.start();
    bms.packPicker($("pack"), await choices());
    const params = new URLSearchParams(location.search);
    const year = params.get("year"), month = params.get("month");
    if (year && /^[1-9]\d{3}$/.test(year)) { view.by = "month"; view.period = year; }
    else if (month && /^[1-9]\d{3}-(0[1-9]|1[0-2])$/.test(month)) view.period = month;
    else view.period = sitePeriod("day");
    $("pack").onchange = load;
    $("prev").onclick = () => step("previous");
    $("next").onclick = () => step("next");
    for (const b of document.querySelectorAll("[data-by]")) {
      b.onclick = () => {
        if (b.dataset.by === view.by) return;
        // the month shown becomes its year, and a year its running month (or December)
        const now = sitePeriod("day");
        view.period = b.dataset.by === "month" ? view.period.slice(0, 4)
          : (now.startsWith(view.period) ? now : `${view.period}-12`);
        view.by = b.dataset.by;
        load();
      };
    }
    addEventListener("resize", () => { if (view.chart) view.chart.setSize({ width: width($("bars")), height: 300 }); });
    // the theme changed (the toggle, or the system's): the bars take the new colours
    const recolour = () => { if (view.report) chart(view.report); };
    new MutationObserver(recolour).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", recolour);
    await load();
  }

  start();
  return view;
})();
