// Shared by every page: API calls, login guard, navigation, theme, small formatting helpers.
"use strict";
const bms = (() => {
  const pages = [["index.html", "Status"], ["energy.html", "Energy"], ["battery.html", "Battery"], ["monitor.html", "Monitor"],
    ["history.html", "History"], ["health.html", "Health"], ["control.html", "Control"], ["bms.html", "BMS settings"],
    ["tunnel.html", "Tunnel"], ["sniffer.html", "Sniffer"], ["export.html", "Exports"],
    ["tokens.html", "Accounts"], ["settings.html", "Settings"], ["system.html", "System"]];

  let zone;  // the site's IANA time zone (GET /api/auth/status); the browser's until it is known

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function api(path, options = {}) {
    const opts = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    if (opts.body !== undefined && typeof opts.body !== "string") {
      opts.body = JSON.stringify(opts.body);
      opts.headers["Content-Type"] = "application/json";
    }
    // relative to the page, so the UI also works under a proxy's path (Home Assistant's ingress)
    const res = await fetch(path.replace(/^\/(?!\/)/, ""), opts);
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!res.ok) {
      if (res.status === 401 && !location.pathname.endsWith("login.html")) {
        location.href = "login.html?next=" + encodeURIComponent(location.pathname.split("/").pop() || "index.html");
      }
      throw new ApiError(res.status, (data && data.detail) || res.statusText);
    }
    return data;
  }

  function applyTheme() {
    const saved = localStorage.getItem("bmsgate-theme");
    if (saved) document.documentElement.dataset.theme = saved;
  }

  // the installer's accent colours (api.accent / accent_dark), after style.css so they win
  const branding = document.createElement("link");
  branding.rel = "stylesheet"; branding.href = "api/branding.css";
  document.head.append(branding);

  // The header is fixed at the top in a band style.css reserves (--header-h): drawn after the
  // login check, it moves nothing on the page. Every page's link in one row where it fits,
  // else (a phone) a Menu button that opens them as a panel.
  function header(status) {
    const here = location.pathname.split("/").pop() || "index.html";
    const el = document.createElement("header");
    el.className = "top";
    const brand = document.createElement("span");
    brand.className = "brand";
    if (status.logo) {
      const logo = document.createElement("img");
      logo.src = status.logo; logo.alt = ""; logo.className = "logo";
      brand.append(logo);
    }
    brand.append(status.title);
    el.append(brand);
    const nav = document.createElement("nav");
    nav.id = "site-nav";
    nav.setAttribute("aria-label", "pages");
    for (const [href, label] of pages) {
      if (status.pages && !status.pages.includes(href)) continue;  // a viewer's: the API's list
      const a = document.createElement("a");
      a.href = href; a.textContent = label;
      if (href === here) a.setAttribute("aria-current", "page");
      nav.append(a);
    }
    const menu = document.createElement("button");
    menu.className = "menu";
    menu.setAttribute("aria-controls", nav.id);
    menu.setAttribute("aria-expanded", "false");
    menu.textContent = `☰ ${(pages.find(p => p[0] === here) || [0, "Menu"])[1]}`;
    const open = (yes) => { el.classList.toggle("open", yes); menu.setAttribute("aria-expanded", String(yes)); };
    menu.onclick = () => open(!el.classList.contains("open"));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") open(false); });
    document.addEventListener("click", (e) => { if (!el.contains(e.target)) open(false); });
    el.append(menu, nav);
    const theme = document.createElement("button");
    theme.title = "light / dark";
    theme.setAttribute("aria-label", "light / dark");
    theme.textContent = "◐";
    theme.onclick = () => {
      const dark = matchMedia("(prefers-color-scheme: dark)").matches;
      const now = document.documentElement.dataset.theme || (dark ? "dark" : "light");
      const next = now === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("bmsgate-theme", next);
    };
    el.append(theme);
    const login = document.createElement("button");
    login.id = "login-button";
    login.textContent = status.logged_in ? "Log out" : "Log in";
    login.onclick = async () => {
      if (status.logged_in) { await api("api/auth/logout", { method: "POST" }); location.reload(); }
      else location.href = "login.html?next=" + encodeURIComponent(here);
    };
    el.append(login);
    document.body.prepend(el);
    // the full row when every link fits in it, else the menu; measured before the next paint
    const fit = () => {
      el.classList.remove("compact");
      el.classList.toggle("compact", el.scrollWidth > el.clientWidth);
      if (!el.classList.contains("compact")) open(false);
    };
    fit();
    addEventListener("resize", fit);
    document.title = `${status.title} · ${(pages.find(p => p[0] === here) || [0, "Login"])[1]}`;
  }

  // a small About line under every page: the installed version (api/version)
  async function about(status) {
    const el = document.createElement("footer");
    el.className = "about muted";
    document.body.append(el);
    try {
      const v = await api("api/version");
      const upgrade = status.viewer ? "" : ' · <a href="settings.html#upgrade">upgrade</a>';
      el.innerHTML = `bmsgate <span id="version">${esc(v.version)}</span>${upgrade}`;
    } catch (e) { el.remove(); }
  }

  // The status of the login; sends the browser to the login page when it may not read.
  // ``load``: a path the page needs first, asked as soon as reading is allowed (beside the setup
  // check, not after it); its answer is the status's ``loaded``.
  async function start({ needLogin = false, load = null } = {}) {
    applyTheme();
    const status = await api("api/auth/status");
    zone = status.timezone || undefined;
    const here = location.pathname.split("/").pop() || "index.html";
    if (status.setup_required || !status.can_read || (needLogin && !status.logged_in)) {
      location.href = "login.html?next=" + encodeURIComponent(here);
      return new Promise(() => {});
    }
    if (status.pages && !status.pages.includes(here)) {  // the server refuses those pages too
      location.href = "index.html";
      return new Promise(() => {});
    }
    const loading = load ? api(load) : null;
    if (loading) loading.catch(() => {});  // awaited below; a redirect may come first
    // no configuration file or no bus in it yet: lead to the setup page (once per visit)
    const viewer = status.viewer || here === "setup.html";
    const setup = viewer ? { needed: false } : await api("api/setup/status");
    if (setup.needed && !sessionStorage.getItem("bmsgate-setup-later")) {
      location.href = "setup.html";
      return new Promise(() => {});
    }
    header(status);
    about(status);
    if (setup.needed) {
      const note = document.createElement("div");
      note.className = "msg setup-note";
      note.innerHTML = 'No serial bus is configured yet. <a href="setup.html">Set up bmsgate</a>';
      document.querySelector("main").prepend(note);
    }
    if (loading) status.loaded = await loading;
    return status;
  }

  const fmt = (v, digits = 1, unit = "") => (v === null || v === undefined || Number.isNaN(v))
    ? "–" : `${Number(v).toFixed(digits)}${unit ? " " + unit : ""}`;
  const esc = (s) => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const ago = (seconds) => seconds < 90 ? `${Math.round(seconds)} s ago`
    : seconds < 5400 ? `${Math.round(seconds / 60)} min ago` : `${Math.round(seconds / 3600)} h ago`;

  // Every time on every page goes through ``when``: in the site's zone, whatever the browser's is,
  // and in one format on every screen, "2026-12-06 17:42:57" ({ seconds: false }: "2026-12-06 17:42";
  // { date: false }: "17:42:57"); ``hhmm`` is "17:42". Numeric and 24 h, so no locale mixes styles.
  const formats = new Map();
  function when(value, { date = true, seconds = true } = {}) {
    const key = zone || "";
    if (!formats.has(key)) {
      formats.set(key, new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }));
    }
    const p = Object.fromEntries(formats.get(key).formatToParts(new Date(value)).map((x) => [x.type, x.value]));
    const time = `${p.hour}:${p.minute}${seconds ? ":" + p.second : ""}`;
    return date ? `${p.year}-${p.month}-${p.day} ${time}` : time;
  }
  const hhmm = (value) => when(value, { date: false, seconds: false });

  // every pack and bank; { banks: false } where a bank cannot work (commands, tunnel, raw frames)
  async function packs({ banks = true } = {}) {
    const list = await api("api/packs");
    return banks ? list : list.filter((p) => !p.bank);
  }

  function packPicker(select, list) {
    select.innerHTML = "";
    for (const p of list) {
      const o = document.createElement("option");
      o.value = p.pack; o.textContent = p.name || p.pack;
      select.append(o);
    }
    const wanted = new URLSearchParams(location.search).get("pack");
    if (wanted && list.some(p => p.pack === wanted)) select.value = wanted;
  }

  function message(el, text, ok) {
    el.className = "msg " + (ok ? "ok" : "err");
    el.textContent = text;
    el.hidden = false;
  }

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  return { api, start, fmt, esc, ago, when, hhmm, zone: () => zone, packs, packPicker, message, css, ApiError };
})();
