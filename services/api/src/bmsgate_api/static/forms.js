// Settings as forms, rendered from the Settings model's fields (GET api/settings/form).
// The forms edit the file's own data: an emptied field is removed, so its default applies again.
"use strict";
const forms = (() => {
  const MASK = "********";
  // where a list's entry was in the file: sent with a save, so a masked secret stays with its entry
  const ORIGIN = Symbol("origin");
  let schema, values, seq = 0;

  const clone = (v) => JSON.parse(JSON.stringify(v));
  const parts = (key) => key === "" ? [] : key.split(".");

  function get(obj, key) {
    let node = obj;
    for (const p of parts(key)) { if (node === null || node === undefined) return undefined; node = node[p]; }
    return node;
  }
  function set(key, value) {
    const path = parts(key);
    let node = values;
    for (let i = 0; i < path.length - 1; i++) {
      if (node[path[i]] === undefined || node[path[i]] === null) node[path[i]] = /^\d+$/.test(path[i + 1]) ? [] : {};
      node = node[path[i]];
    }
    const last = path[path.length - 1];
    if (value === undefined) { if (Array.isArray(node)) node[last] = undefined; else delete node[last]; }
    else node[last] = value;
  }
  // the model node of a dotted key (list indexes step into the items)
  function nodeOf(key) {
    let node = { kind: "object", fields: schema.fields };
    for (const p of parts(key)) {
      if (node.kind === "array") node = node.items;
      else if (node.kind === "map") node = node.values;
      else node = node.fields[p];
      if (!node) return null;
    }
    return node;
  }

  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v === true ? "" : v);
    }
    e.append(...kids.filter(k => k !== null && k !== undefined));
    return e;
  };
  const shown = (v) => v === null || v === undefined ? "" : Array.isArray(v) ? v.join(", ") : String(v);

  // the same words the server uses, at once while typing
  function check(node, raw) {
    if (raw === "") return node.required && node.default === undefined ? "required" : "";
    if (node.kind === "integer" || node.kind === "number") {
      const n = Number(raw);
      if (!Number.isFinite(n)) return "must be a number";
      if (node.kind === "integer" && !Number.isInteger(n)) return "must be a whole number";
      if (node.min !== undefined && n < node.min) return `must be at least ${node.min}`;
      if (node.max !== undefined && n > node.max) return `must be at most ${node.max}`;
      if (node.gt !== undefined && n <= node.gt) return `must be more than ${node.gt}`;
      if (node.lt !== undefined && n >= node.lt) return `must be less than ${node.lt}`;
    }
    if (node.kind === "string" && node.pattern && !new RegExp(node.pattern).test(raw)) return "not in the expected form";
    if (node.max_length !== undefined && raw.length > node.max_length) return `at most ${node.max_length} characters`;
    return "";
  }

  function field(key, node, name) {
    const id = `f${++seq}`;
    const value = get(values, key);
    const row = el("div", { class: "field", "data-key": key });
    const label = el("label", { for: id, text: node.title || name });
    if (node.unit) label.append(" ", el("small", { class: "unit", text: `[${node.unit}]` }));
    const error = el("div", { class: "field-error", role: "alert", id: `${id}-err`, hidden: true });
    const help = node.help ? el("small", { class: "help muted", id: `${id}-help`, text: node.help }) : null;
    const described = [help && help.id, error.id].filter(Boolean).join(" ");
    const dflt = node.default === undefined || node.default === null ? "" : `default ${shown(node.default)}`;
    let input;
    const changed = (raw, parsed) => {
      const problem = check(node, raw);
      showError(row, problem);
      if (!problem) set(key, raw === "" ? undefined : parsed);
    };
    if (node.kind === "boolean") {
      input = el("input", { type: "checkbox", id, "aria-describedby": described });
      input.checked = value === undefined ? !!node.default : !!value;
      input.onchange = () => set(key, input.checked);
      row.classList.add("check");
      row.append(...[input, label, help, error].filter(Boolean));
      return row;
    }
    if (node.kind === "enum") {
      input = el("select", { id, "aria-describedby": described });
      if (!node.required) input.append(el("option", { value: "", text: dflt ? `(${dflt})` : "(not set)" }));
      const words = node.labels || {};  // what a person reads; the file keeps the value
      for (const o of node.options) input.append(el("option", { value: String(o), text: words[o] || String(o) }));
      input.value = value === undefined || value === null ? "" : String(value);
      input.onchange = () => {
        const o = node.options.find(x => String(x) === input.value);
        changed(input.value, o);
      };
    } else if (node.kind === "multi") {
      input = el("fieldset", { class: "multi", id, "aria-describedby": described });
      input.append(el("legend", { class: "visually-hidden", text: node.title || name }));
      const picked = node.choices ? choices(node.choices, value) : null;
      const on = new Set(value ?? node.default ?? (picked ? [] : node.options));
      for (const o of picked ? picked.map(c => c.id) : node.options) {
        const box = el("input", { type: "checkbox", value: o, id: `${id}-${o}` });
        box.checked = on.has(o);
        box.onchange = () => {
          const ticked = [...input.querySelectorAll("input:checked")].map(b => b.value);
          set(key, picked && !ticked.length ? undefined : ticked);
        };
        const word = picked ? picked.find(c => c.id === o).text : (node.labels || {})[o] || o;
        input.append(el("label", { class: "opt" }, box, ` ${word}`));
      }
      if (picked && !picked.length) input.append(el("span", { class: "muted", text: "no packs configured yet" }));
    } else if (node.kind === "secret") {
      const stored = value === MASK;
      input = el("input", { type: "password", id, autocomplete: "new-password", "aria-describedby": described,
        placeholder: stored ? "stored (type to replace)" : "not set" });
      input.oninput = () => set(key, input.value === "" ? (stored ? MASK : undefined) : input.value);
    } else if (node.kind === "map") {
      return pairs(key, node, name, { row, help, error, described });
    } else if (node.kind === "array") {
      return rows(key, node, name, { row, help, error, described });
    } else {
      const numeric = node.kind === "integer" || node.kind === "number";
      const type = numeric ? "number" : node.format === "time" ? "time" : "text";
      input = el("input", { type, id, "aria-describedby": described, placeholder: dflt || (node.nullable ? "not set" : ""),
        step: numeric ? (node.kind === "integer" ? "1" : "any") : null, inputmode: numeric ? "decimal" : null,
        required: node.required && node.default === undefined });
      input.value = shown(value);
      input.onchange = () => changed(input.value.trim(), numeric ? Number(input.value) : input.value.trim());
    }
    row.append(...[label, input, help, error].filter(Boolean));
    return row;
  }

  // a list of plain values: one row each, added, removed and moved one by one
  function rows(key, node, name, { row, help, error, described }) {
    const title = node.title || name;
    const list = get(values, key) || [];
    const box = el("fieldset", { class: "rows", "aria-describedby": described });
    box.append(el("legend", { text: title }));
    const num = node.items && (node.items.kind === "integer" || node.items.kind === "number");
    list.forEach((item, i) => {
      const at = `${key}.${i}`, what = `${title} ${i + 1}`;
      const id = `f${++seq}`;
      const entry = el("div", { class: "field entry", "data-key": at });
      const err = el("div", { class: "field-error", role: "alert", id: `${id}-err`, hidden: true });
      const input = el("input", { type: "text", id, "aria-label": what, "aria-describedby": err.id,
        inputmode: num ? "decimal" : null });
      input.value = shown(item);
      input.onchange = () => {
        const raw = input.value.trim();
        const problem = raw === "" ? "type a value or remove the entry" : node.items ? check(node.items, raw) : "";
        showError(entry, problem);
        set(at, num && raw !== "" ? Number(raw) : raw);
      };
      entry.append(input, ...moves(key, i, list.length, what), el("button", { type: "button", class: "danger",
        text: "Remove", "aria-label": `Remove ${what}`, onclick: () => {
          const now = get(values, key).filter((_, j) => j !== i);
          set(key, now.length ? now : undefined);
          redraw(now.length ? `${key}.${Math.min(i, now.length - 1)}` : key, now.length ? "input" : "button");
        } }), err);
      box.append(entry);
    });
    if (!list.length) box.append(el("p", { class: "muted", text: "None." }));
    box.append(el("button", { type: "button", text: "Add entry", "aria-label": `Add entry to ${title}`, onclick: () => {
      set(key, [...(get(values, key) || []), ""]);
      redraw(`${key}.${(get(values, key) || []).length - 1}`, "input");
    } }));
    row.classList.add("list-of-values");
    row.append(...[box, help, error].filter(Boolean));
    return row;
  }

  // an entry's own move button (not one of a list inside it)
  const mover = (dir) => `:scope > button[data-move="${dir}"], :scope > .row > button[data-move="${dir}"]`;
  // a mapping: one row per key and its value; the rows in the page are the mapping
  function pairs(key, node, name, { row, help, error, described }) {
    const title = node.title || name;
    const kt = node.key_title || "Key", vt = node.value_title || "Value";
    const box = el("fieldset", { class: "rows", "aria-describedby": described });
    box.append(el("legend", { text: title }));
    const collect = () => {
      const out = {};
      for (const e of box.querySelectorAll(":scope > .entry")) {
        const [k, v] = e.querySelectorAll("input");
        if (k.value.trim() !== "") out[k.value.trim()] = v.value.trim();
      }
      set(key, Object.keys(out).length ? out : undefined);
    };
    const add = (k, v) => {
      const n = box.querySelectorAll(":scope > .entry").length + 1;
      const id = `f${++seq}`;
      const entry = el("div", { class: "field entry pair", "data-key": `${key}.${k}` });
      const err = el("div", { class: "field-error", role: "alert", id: `${id}-err`, hidden: true });
      const kin = el("input", { type: "text", class: "key", "aria-label": `${title} ${n}: ${kt}`, placeholder: kt,
        "aria-describedby": err.id });
      const vin = el("input", { type: "text", "aria-label": `${title} ${n}: ${vt}`, placeholder: vt, "aria-describedby": err.id });
      kin.value = k; vin.value = shown(v);
      kin.onchange = () => { entry.dataset.key = `${key}.${kin.value.trim()}`; collect(); };
      vin.onchange = () => { showError(entry, node.values ? check(node.values, vin.value.trim()) : ""); collect(); };
      const remove = el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${title} ${n}`,
        onclick: () => {
          const next = entry.nextElementSibling;
          entry.remove(); collect();
          (next && next.querySelector("input") || adder).focus();
        } });
      entry.append(kin, vin, remove, err);
      adder.before(entry);
      return kin;
    };
    const adder = el("button", { type: "button", text: "Add entry", "aria-label": `Add entry to ${title}`,
      onclick: () => add("", "").focus() });
    box.append(adder);
    for (const [k, v] of Object.entries(get(values, key) || {})) add(k, v);
    row.classList.add("list-of-values");
    row.append(...[box, help, error].filter(Boolean));
    return row;
  }

  // "Move up" and "Move down" for entry i of the list at key; the moved entry keeps the focus
  function moves(key, i, n, what) {
    const move = (to, dir) => () => {
      const now = [...get(values, key)];
      [now[i], now[to]] = [now[to], now[i]];
      set(key, now);
      redraw(`${key}.${to}`, mover(dir), dir);
    };
    return [
      el("button", { type: "button", class: "move", "data-move": "up", text: "↑", title: "Move up",
        "aria-label": `Move ${what} up`, disabled: i === 0, onclick: move(i - 1, "up") }),
      el("button", { type: "button", class: "move", "data-move": "down", text: "↓", title: "Move down",
        "aria-label": `Move ${what} down`, disabled: i === n - 1, onclick: move(i + 1, "down") }),
    ];
  }

  // what a list is picked from: "packs", the configured packs ("packs_banks": and the banks),
  // and any listed one no longer there
  function choices(what, value) {
    const out = [];
    if (what === "packs" || what === "packs_banks") {
      for (const bus of values.buses || []) for (const p of (bus && bus.packs) || []) {
        if (p && p.id) out.push({ id: p.id, text: p.name && p.name !== p.id ? `${p.name} (${p.id})` : p.id });
      }
    }
    if (what === "packs_banks") {
      for (const b of values.banks || []) {
        if (b && b.id) out.push({ id: b.id, text: `${b.name && b.name !== b.id ? `${b.name} (${b.id})` : b.id}, bank` });
      }
    }
    for (const v of value || []) if (!out.some(c => c.id === v)) out.push({ id: v, text: `${v} (not configured)` });
    return out;
  }

  function showError(row, text) {
    const err = row.querySelector(":scope > .field-error");
    const input = row.querySelector(":scope > input, :scope > select, :scope > textarea, :scope > fieldset");
    err.textContent = text; err.hidden = !text;
    if (input) input.setAttribute("aria-invalid", text ? "true" : "false");
    row.classList.toggle("invalid", !!text);
  }

  // an object's fields; nested sections fold
  function object(key, node, omit = []) {
    const box = el("div", { class: "fields", "data-key": key });
    box.append(el("div", { class: "field-error", role: "alert", hidden: true }));
    for (const [name, sub] of Object.entries(node.fields)) {
      if (omit.includes(name)) continue;
      const at = key ? `${key}.${name}` : name;
      box.append(render(at, sub, name));
    }
    return box;
  }

  function itemName(item, i) {
    return item && (item.name || item.id || item.host || item.plate || item.port) || `#${i + 1}`;
  }

  // "NotifyTargetSettings" -> "notify target": what one item of a list is called
  const one = (node, name) => (node.items.title || name).replace(/Settings$/, "").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();

  function list(key, node, name, omit = []) {
    const box = el("div", { class: "list", "data-key": key });
    box.append(el("div", { class: "field-error", role: "alert", hidden: true }));
    const items = get(values, key) || [];
    const word = one(node, name);
    items.forEach((item, i) => {
      if (item === undefined) return;  // removed
      const at = `${key}.${i}`;
      let what = `${word} ${itemName(item, i)}`;
      const d = el("details", { class: "item", "data-item": at, open: items.length < 3 || opened.has(item) });
      d.ontoggle = () => { if (d.open) opened.add(item); else opened.delete(item); };
      const remove = el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${what}`,
        onclick: () => {
          if (!confirm(`Remove ${itemName(item, i)}?`)) return;
          const now = get(values, key).filter((_, j) => j !== i);
          set(key, now.length ? now : undefined);
          redraw(now.length ? `${key}.${Math.min(i, now.length - 1)}` : key, now.length ? "summary" : "button");
        } });
      const summary = el("summary", { text: `${word[0].toUpperCase()}${word.slice(1)}: ${itemName(item, i)}` });
      // the entry's name as it is typed
      d.addEventListener("change", () => {
        const now = itemName(get(values, at), i);
        summary.textContent = `${word[0].toUpperCase()}${word.slice(1)}: ${now}`;
        for (const b of d.querySelectorAll(":scope > .row > button")) {
          b.setAttribute("aria-label", b.getAttribute("aria-label").replace(what, `${word} ${now}`));
        }
        what = `${word} ${now}`;
      });
      d.append(summary, object(at, node.items, omit), el("div", { class: "row" }, ...moves(key, i, items.length, what), remove));
      box.append(d);
    });
    box.append(el("div", { class: "row" }, el("button", { type: "button", text: `Add ${word}`,
      onclick: () => {
        const added = {};
        opened.add(added);
        set(key, [...(get(values, key) || []).filter(x => x !== undefined), added]);
        redraw(`${key}.${get(values, key).length - 1}`, "input, select");
      } })));
    return box;
  }

  function render(key, node, name, omit) {
    if (node.kind === "object" && node.fields) {
      const d = el("details", { class: "section", "data-section": key });
      d.append(el("summary", { text: node.title || name }), node.help ? el("p", { class: "muted", text: node.help }) : null,
        object(key, node, omit));
      return d;
    }
    if (node.kind === "array" && node.items && node.items.kind === "object") return list(key, node, name, omit);
    return field(key, node, name);
  }

  // one form of a group; "a.*.b": the b of every item of list a
  function part(p) {
    const card = el("section", { class: "card form", "data-part": p.key });
    card.append(el("h2", { text: p.title }));
    const star = p.key.indexOf(".*.");
    if (star >= 0) {
      const listKey = p.key.slice(0, star), rest = p.key.slice(star + 3);
      const items = (get(values, listKey) || []).filter(x => x !== undefined);
      if (!items.length) card.append(el("p", { class: "muted", text: `None yet: add one under ${nodeOf(listKey).title}.` }));
      items.forEach((item, i) => {
        const key = `${listKey}.${i}.${rest}`;
        card.append(el("h3", { text: itemName(item, i) }), body(key, nodeOf(key), p.omit));
      });
      return card;
    }
    card.append(body(p.key, nodeOf(p.key), p.omit));
    return card;
  }
  function body(key, node, omit) {
    if (node.kind === "object" && node.fields) {
      return el("div", {}, node.help ? el("p", { class: "muted", text: node.help }) : null, object(key, node, omit));
    }
    return render(key, node, key.split(".").pop(), omit);
  }

  let host, current, opened = new WeakSet();  // list entries folded open, followed when they move
  // draw the group again; then focus `what` in the entry or list at `key` (after an add, remove or move)
  function redraw(key, what, dir) {
    const open = [...host.querySelectorAll("details[open]")].map(d => d.dataset.section).filter(Boolean);
    host.innerHTML = "";
    const group = schema.groups.find(g => g.id === current) || schema.groups[0];
    for (const p of group.parts) host.append(part(p));
    for (const key of open) { const d = host.querySelector(`details[data-section="${CSS.escape(key)}"]`); if (d) d.open = true; }
    if (!key) return;
    const at = host.querySelector(`[data-item="${CSS.escape(key)}"], [data-key="${CSS.escape(key)}"]`);
    if (!at) return;
    for (let d = at.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    let target = at.querySelector(what);
    if (dir && target && target.disabled) target = at.querySelector(mover(dir === "up" ? "down" : "up"));
    (target || at).focus();
  }

  // the server's messages beside their fields (the nearest shown key when a field is not shown)
  function showErrors(errors) {
    for (const row of host.querySelectorAll(".field.invalid")) showError(row, "");
    for (const box of host.querySelectorAll(".field-error")) { if (!box.closest(".field")) { box.hidden = true; box.textContent = ""; } }
    const unshown = [];
    for (const e of errors) {
      let key = e.key, target = null;
      while (true) {
        target = host.querySelector(`[data-key="${CSS.escape(key)}"]`);
        if (target || !key) break;
        key = parts(key).slice(0, -1).join(".");
      }
      if (!target) { unshown.push(e); continue; }
      if (target.classList.contains("field")) showError(target, e.msg);
      else {
        const box = target.querySelector(":scope > .field-error");
        box.textContent = e.key === key ? e.msg : `${e.key.slice(key.length + 1)}: ${e.msg}`;
        box.hidden = false;
      }
      for (let d = target.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    }
    const first = host.querySelector(".field.invalid input, .field.invalid select, .field-error:not([hidden])");
    if (first) first.scrollIntoView({ block: "center" });
    return unshown;
  }

  // every entry of a list of objects remembers its place in the file
  function mark(v) {
    if (Array.isArray(v)) v.forEach((x, i) => { if (x && typeof x === "object" && !Array.isArray(x)) x[ORIGIN] = i; mark(x); });
    else if (v && typeof v === "object") Object.values(v).forEach(mark);
  }
  function load(data, where, group) {
    schema = data.schema; values = clone(data.values || {}); host = where; current = group; opened = new WeakSet();
    mark(values);
    redraw();
  }
  function show(group) { current = group; redraw(); }
  // what was sent is the file now: the entries' places are counted afresh for the next save
  function saved(sent) { values = sent; mark(values); }
  const data = () => {  // removed list items dropped
    const strip = (v) => Array.isArray(v) ? v.filter(x => x !== undefined).map(strip)
      : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, strip(x)])) : v;
    return strip(values);
  };
  // dotted key of each list of objects -> where its entries were in the file (null: added here)
  const origins = () => {
    const out = {};
    const walk = (v, key) => {
      if (Array.isArray(v)) {
        const list = v.filter(x => x !== undefined);
        if (list.some(x => x && typeof x === "object")) out[key] = list.map(x => x && x[ORIGIN] !== undefined ? x[ORIGIN] : null);
        list.forEach((x, i) => walk(x, `${key}.${i}`));
      } else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, key ? `${key}.${k}` : k);
    };
    walk(values, "");
    return out;
  };
  return { load, show, saved, data, origins, showErrors, groups: () => schema.groups, where: (key) => {
    for (const g of schema.groups) for (const p of g.parts) {
      const base = p.key.split(".*.")[0];
      if (key === base || key.startsWith(base + ".")) return g.id;
    }
    return null;
  } };
})();
