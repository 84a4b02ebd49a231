// The Status page (index.html): a card per bank and pack, kept current by api/events
"use strict";
// bmsgate's own SOC beside the BMS's (docs/reader.md), when the pack counts one
const ownSoc = (s) => s.soc_estimate === null || s.soc_estimate === undefined ? ""
  : ` <small class="muted" data-field="soc_estimate" title="bmsgate's own SOC: counted, re-synced at full and empty">bmsgate ${bms.fmt(s.soc_estimate, 0, "%")}</small>`;
const views = new Map();
const banks = new Map();
const root = document.getElementById("packs");
const bankRoot = document.getElementById("banks");
const { esc, ago } = bms;
const fmt = (...args) => bms.fmt(...args).replace(" ", "\u00a0");  // a value never breaks before its unit

function mos(label, on) {
  if (on === null || on === undefined) return "";
  return `<span class="pill ${on ? "on" : "off"}">${label} ${on ? "on" : "off"}</span>`;
}

const hhmm = bms.hhmm;
const mv = (volts) => fmt(volts === null ? null : volts * 1000, 0, "mV");
const activity = (v) => `<span class="pill ${v.activity}" data-field="activity">${v.activity === "idle" ? "relaxing" : v.activity}</span>`;

// the dongle's two layouts; a pack's choice is remembered, else the one its protocol names
const layouts = new Map();  // protocol -> "daly" | "jk" (GET /api/protocols)
const labels = new Map();  // protocol -> its display name ("JK-PB (RS485 Modbus)"), from the registry
const protocolName = (id) => labels.get(id) || id;
function layoutOf(v) {
  const saved = localStorage.getItem(`bmsgate-layout-${v.pack}`);
  if (saved === "daly" || saved === "jk") return saved;
  return (v.state && layouts.get(v.state.protocol)) || "daly";
}

function switcher(v, layout) {
  const b = (name, label) => `<button data-layout="${name}" aria-pressed="${layout === name}" title="${label} layout">${label}</button>`;
  return `<span class="seg" data-switch="${esc(v.pack)}">${b("daly", "DALY")}${b("jk", "JK")}</span>`;
}

function offline(v, kind) {
  return `<div class="card offline ${kind}" data-pack="${esc(v.pack)}"><h2>${esc(v.name)} <small>offline</small></h2>
    <p class="muted">${esc(v.reason || "")}</p>
    <p class="muted">last seen: ${v.last_seen ? `<span class="age" data-ts="${esc(v.last_seen)}">${ago(v.age)}</span>` : "never"}</p>
    ${members(v)}</div>`;
}

function members(v) {
  if (!v.members) return "";
  return `<div class="row members">${v.members.map(m =>
    `<span class="pill ${m.counted ? "on" : "off"}" title="${esc(m.reason || "counted")}">${esc(m.name)}${m.counted ? "" : ": " + esc(m.reason)}</span>`).join(" ")}</div>`;
}

// energy first: today's kWh in and out (a bank: its members' days summed by the API)
const kwh = (v) => fmt(v, 2, "kWh");
function today(v) {
  return `<div class="today" data-field="today"><span>Today</span>
    <span title="charged today">▲ in <b data-field="energy-in">${kwh(v.energy_in_today)}</b></span>
    <span title="discharged today">▼ out <b data-field="energy-out">${kwh(v.energy_out_today)}</b></span></div>`;
}

function maxSoc(v) {
  const d = v.daily;
  return d && d.max_soc !== null ? `${fmt(d.max_soc, 0, "%")} at ${hhmm(d.max_soc_at)}` : "–";
}

function alarms(v) {
  return v.alarms.length
    ? `<ul class="alarms">${v.alarms.map(a => `<li>${esc(a.text)}</li>`).join("")}</ul>` : `<p class="muted">no alarms</p>`;
}

// Values the reader reads every slow_every polls: said with their own age, never as read now.
function slowRead(v) {
  const ages = v.state.ages || {};
  const names = Object.keys(ages).filter(k => k !== "cell_count" && k !== "balancing_cells");
  if (!names.length) return "";
  const oldest = Math.max(...names.map(k => ages[k]));
  const at = new Date(Date.parse(v.state.ts) - oldest * 1000).toISOString();
  const list = names.map(k => k === "cell_voltages" ? "cells" : k.replace(/_/g, " ")).join(", ");
  return `<p class="muted" data-field="slow-read">${esc(list)} read <span class="slow-age" data-ts="${at}">${ago(v.age + oldest)}</span></p>`;
}

// a bank has no BMS of its own: its time is when its members were last read
function footer(v, kind) {
  const s = v.state, fw = s.extras && s.extras.software_version;
  const read = kind === "bank" ? "members read" : "BMS read";
  return `${slowRead(v)}${v.findings.length ? `<p><a href="health.html?pack=${esc(v.pack)}">${v.findings.length} health finding(s)</a></p>` : ""}
    <p class="muted"><span class="beat" title="BMS heartbeat: a new reading">♥</span> ${read} <span class="age" data-ts="${esc(s.ts)}">${ago(v.age)}</span>${fw ? ` · firmware ${esc(fw)}` : ""} ·
      <a href="battery.html?pack=${esc(v.pack)}">cells&nbsp;24&nbsp;h</a> · <a href="monitor.html?pack=${esc(v.pack)}">power&nbsp;24&nbsp;h</a></p>`;
}

function cellClass(v, i) {
  return i + 1 === v.cell_max_index ? "hi" : i + 1 === v.cell_min_index ? "lo" : "";
}

// A bank's cells (every member's, joined) folded per member: a 48-cell grid is three short
// ones, shut on a phone until opened; a choice made on a card outlives its next update.
const folds = new Map();  // "bank/member" -> open
const wide = matchMedia("(min-width: 48rem)");
function cellGrid(v, from, to) {
  const s = v.state;
  return `<div class="cells">${s.cell_voltages.slice(from, to).map((c, j) => {
    const i = from + j, bal = s.balancing_cells.includes(i + 1) ? " ⇄" : "";
    return `<span class="${cellClass(v, i)}"><small>${i + 1}${bal}</small>${c.toFixed(3)}</span>`;
  }).join("")}</div>`;
}

function memberCells(v) {
  const s = v.state, parts = [];
  let from = 0;
  for (const m of v.members.filter(m => m.cells)) {
    const cells = s.cell_voltages.slice(from, from + m.cells);
    const key = `${v.pack}/${m.pack}`, open = folds.has(key) ? folds.get(key) : wide.matches;
    parts.push(`<details class="fold" data-fold="${esc(key)}"${open ? " open" : ""}><summary>${esc(m.name)}: ` +
      `${m.cells} cells, ${mv(Math.min(...cells))} – ${mv(Math.max(...cells))}</summary>${cellGrid(v, from, from + m.cells)}</details>`);
    from += m.cells;
  }
  return from === s.cell_voltages.length ? parts.join("") : cellGrid(v, 0, s.cell_voltages.length);
}

bankRoot.addEventListener("toggle", (e) => {
  const key = e.target.dataset && e.target.dataset.fold;
  if (key) folds.set(key, e.target.open);
}, true);

function dalyCard(v, kind) {
  const s = v.state;
  const cells = kind === "bank" && v.members ? memberCells(v) : cellGrid(v, 0, s.cell_voltages.length);
  const temps = s.temperatures.map(t => fmt(t, 0, "°C")).join(" · ") || "–";
  return `<div class="card daly ${kind}" data-pack="${esc(v.pack)}">
    <h2>${esc(v.name)} <small>${kind === "bank" ? "bank" : esc(protocolName(s.protocol))}</small> ${activity(v)}
      ${kind === "bank" ? "" : switcher(v, "daly")}</h2>
    <div class="soc" data-field="soc">${fmt(s.soc, 0, "%")}${ownSoc(s)}</div>
    <div class="bar"><div style="width:${Math.max(0, Math.min(100, s.soc))}%"></div></div>
    ${today(v)}
    <div class="kv">
      <div><span>Voltage</span><span data-field="voltage">${fmt(s.pack_voltage, 2, "V")}</span></div>
      <div><span>Current</span><span data-field="current">${fmt(s.current, 1, "A")}</span></div>
      <div><span>Power</span><span data-field="power">${fmt(s.power, 0, "W")}</span></div>
      <div><span>Average cell</span><span>${mv(v.cell_average)}</span></div>
      <div><span>Delta over ${s.cell_count} cells</span><span data-field="delta">${mv(v.cell_delta)}</span></div>
      <div><span>Remaining</span><span>${fmt(s.remaining_capacity, 1, "Ah")}</span></div>
      ${kind === "bank" ? "" : `<div><span>Cycles</span><span>${s.cycles ?? "–"}</span></div>`}
      <div><span>MOS temp</span><span>${fmt(s.mos_temperature, 0, "°C")}</span></div>
      ${kind === "bank" && !(v.daily && v.daily.max_soc !== null) ? "" : `<div><span>Max SOC today</span><span data-field="max-soc">${maxSoc(v)}</span></div>`}
    </div>
    <p>Temperatures: ${temps}</p>
    ${cells}
    <div class="row">${mos("charge", s.charge_mos)} ${mos("discharge", s.discharge_mos)} ${mos("balancing", s.balancing)}</div>
    ${members(v)}${alarms(v)}${footer(v, kind)}
  </div>`;
}

function jkCard(v) {
  const s = v.state;
  const half = Math.ceil(s.cell_voltages.length / 2);
  const cell = (c, i) => `<div class="${cellClass(v, i)}"><span>${String(i + 1).padStart(2, "0")}</span>` +
    `<b>${c.toFixed(3)} V</b>${s.balancing_cells.includes(i + 1) ? "<i>⇄</i>" : ""}</div>`;
  const column = (from, to) => `<div>${s.cell_voltages.slice(from, to).map((c, i) => cell(c, from + i)).join("")}</div>`;
  const item = (label, value, field = "") => `<div><small>${label}</small><b${field ? ` data-field="${field}"` : ""}>${value}</b></div>`;
  const sw = (label, on) => on === null || on === undefined ? "" :
    `<span class="jk-switch ${on ? "on" : "off"}">${label} <b>${on ? "on" : "off"}</b></span>`;  // state, not a control
  return `<div class="card jk" data-pack="${esc(v.pack)}">
    <h2>${esc(v.name)} <small>${esc(protocolName(s.protocol))}</small> ${activity(v)} ${switcher(v, "jk")}</h2>
    <div class="jk-top">
      <div class="ring" style="--soc:${Math.max(0, Math.min(100, s.soc))}"><b data-field="soc">${fmt(s.soc, 0, "%")}</b><small>SOC${ownSoc(s)}</small></div>
      <div class="jk-grid">
        ${item("Voltage", fmt(s.pack_voltage, 2, "V"), "voltage")}${item("Current", fmt(s.current, 2, "A"), "current")}
        ${item("Power", fmt(s.power, 0, "W"), "power")}${item("Remain", `${fmt(s.remaining_capacity, 1, "Ah")}`)}
        ${item("Capacity", fmt(s.nominal_capacity, 0, "Ah"))}${item("Cycles", s.cycles ?? "–")}
      </div>
    </div>
    ${today(v)}
    <div class="jk-cells">${column(0, half)}${column(half, s.cell_voltages.length)}</div>
    <div class="jk-grid">
      ${item("Ave. cell", mv(v.cell_average))}${item(`Delta (${s.cell_count})`, mv(v.cell_delta), "delta")}
      ${item("MOS temp", fmt(s.mos_temperature, 0, "°C"))}
      ${s.temperatures.map((t, i) => item(`T${i + 1}`, fmt(t, 0, "°C"))).join("")}
      ${item("Max SOC today", maxSoc(v), "max-soc")}
    </div>
    <div class="row">${sw("Charge", s.charge_mos)}${sw("Discharge", s.discharge_mos)}${sw("Balance", s.balancing)}</div>
    ${alarms(v)}${footer(v)}
  </div>`;
}

function card(v) {
  if (!v.online || !v.state) return offline(v, "pack");
  return layoutOf(v) === "jk" ? jkCard(v) : dalyCard(v, "pack");
}

function bankCard(v) {
  return !v.online || !v.state ? offline(v, "bank") : dalyCard(v, "bank");
}

// the configuration's order (api/status `order`); a pack heard of later, not configured, last
let order = new Map();
const rank = (v) => order.has(v.pack) ? order.get(v.pack) : order.size;
const sorted = (map) => [...map.values()].sort((a, b) => rank(a) - rank(b) || a.pack.localeCompare(b.pack));

function render() {
  bankRoot.innerHTML = sorted(banks).map(bankCard).join("");
  const packs = sorted(views).filter(v => !banks.has(v.pack));  // a bank is shown as a bank
  root.innerHTML = packs.length ? packs.map(card).join("") : `<p class="muted">No pack has reported yet.</p>`;
}

// one card replaced, so only it shows a heartbeat
function update(map, v, make) {
  const known = map.has(v.pack);
  map.set(v.pack, v);
  if (map === views && banks.has(v.pack)) return;  // the publisher's copy of a bank
  const old = (map === banks ? bankRoot : root).querySelector(`.card[data-pack="${CSS.escape(v.pack)}"]`);
  if (!known || !old) { render(); return; }
  old.outerHTML = make(v);
}

root.addEventListener("click", (e) => {
  const button = e.target.closest("[data-layout]");
  if (!button) return;
  const pack = button.closest("[data-switch]").dataset.switch;
  localStorage.setItem(`bmsgate-layout-${pack}`, button.dataset.layout);
  update(views, views.get(pack), card);
});

// Trust: the page says when it no longer hears the API (a hung process keeps the stream open,
// so silence counts too: the API sends a beat whenever it has nothing else for an interval)
let source = null, heard = Date.now(), beatMs = 10_000, opened = 0, staleMs = 60_000;
function listen() {
  if (source) source.close();
  source = new EventSource("api/events");
  opened = Date.now();
  const on = (name, handle) => source.addEventListener(name, (e) => { heard = Date.now(); handle(e); });
  on("beat", (e) => {
    const beat = JSON.parse(e.data);
    beatMs = beat.interval * 1000; staleMs = beat.stale_after * 1000;
  });
  on("pack", (e) => update(views, JSON.parse(e.data), card));
  on("bank", (e) => update(banks, JSON.parse(e.data), bankCard));
}

function watchdog() {
  const silent = Date.now() - heard;
  // (a stream still connecting for the first time is not lost: no banner flashes at the start)
  const lost = silent > 2 * beatMs || (source.readyState !== EventSource.OPEN && Date.now() - opened > beatMs);
  const banner = document.getElementById("lost");
  if (lost) {
    banner.textContent = `Connection to bmsgate lost: nothing heard since ${bms.when(heard, { date: false })}. ` +
      "The values below may be out of date; reconnecting…";
  }
  banner.hidden = !lost;
  document.body.classList.toggle("stale", lost);
  // a closed stream (an HTTP error) or a long silence: open a new one, at most every 10 s
  if ((source.readyState === EventSource.CLOSED || silent > 4 * beatMs) && Date.now() - opened > 10_000) listen();
}

function tick() {
  watchdog();
  for (const el of document.querySelectorAll(".age[data-ts]")) {
    const age = Date.now() - Date.parse(el.dataset.ts);
    // a live card whose reading outgrows stale_after (a hung reader or broker sends no
    // offline word) is greyed and says so until the next event decides
    const card = el.closest(".card:not(.offline)");
    const late = card !== null && age > staleMs;
    if (card) card.classList.toggle("late", late);
    el.textContent = ago(age / 1000) + (late ? " · not live" : "");
  }
  for (const el of document.querySelectorAll(".slow-age[data-ts]")) {
    el.textContent = ago((Date.now() - Date.parse(el.dataset.ts)) / 1000);
  }
  document.getElementById("clock").textContent = bms.when(Date.now());
}

function showSky(sky) {
  const parts = [];
  if (sky.sunrise) parts.push(`<span title="sunrise">☀↑ ${hhmm(sky.sunrise)}</span>`, `<span title="sunset">☀↓ ${hhmm(sky.sunset)}</span>`);
  if (sky.polar) parts.push(`<span>${sky.polar === "day" ? "midnight sun" : "polar night"}</span>`);
  const f = sky.forecast;
  if (f) {
    parts.push(`<span data-field="weather">${fmt(f.temperature, 0, "°C")} ${esc(f.weather || "")}</span>`);
    for (const d of f.days.slice(1, 3)) {
      const day = new Date(d.day + "T12:00:00").toLocaleDateString([], { weekday: "short" });
      parts.push(`<span>${esc(day)} ${fmt(d.t_min, 0)}–${fmt(d.t_max, 0, "°C")} ${esc(d.weather || "")}${d.rain_chance ? ` ☂ ${fmt(d.rain_chance, 0, "%")}` : ""}</span>`);
    }
    parts.push(`<small class="muted">weather: ${esc(f.source)}</small>`);
  }
  const sky$ = document.getElementById("sky");
  sky$.querySelectorAll(":scope > :not(#clock)").forEach(el => el.remove());
  sky$.insertAdjacentHTML("beforeend", parts.join(""));
}

let skyTries = 0;
async function refreshSky() {
  try {
    const sky = await bms.api("api/sky");
    showSky(sky);
    if (sky.weather && !sky.forecast && ++skyTries < 4) setTimeout(refreshSky, 5000);  // being fetched
  } catch (err) { /* the sky is optional: never an error */ }
}

(async () => {
  // the first paint's data in one answer, asked beside the setup check
  const page = (await bms.start({ load: "api/status" })).loaded;
  order = new Map(page.order.map((p, i) => [p, i]));
  for (const [name, layout] of Object.entries(page.layouts)) layouts.set(name, layout);
  for (const [name, label] of Object.entries(page.labels)) labels.set(name, label);
  for (const v of page.packs) views.set(v.pack, v);
  for (const v of page.banks) banks.set(v.pack, v);
  showSky(page.sky);
  if (page.sky.weather && !page.sky.forecast) setTimeout(refreshSky, 5000);  // being fetched
  render();
  listen();
  setInterval(tick, 1000);
  setInterval(refreshSky, 60_000);
  tick();
})();
