// The first-run setup page: ports -> scan -> names and bank -> outputs -> write, then live values.
"use strict";
(async () => {
  const $ = (id) => document.getElementById(id);
  const { api, esc, message } = bms;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const auth = await bms.start({ needLogin: true });
  document.title = `${auth.title} · Setup`;
  const status = await api("api/setup/status");
  $("file").textContent = status.config_file ? `Writes ${status.config_file}` : "No configuration file given (--config).";
  $("later").onclick = () => sessionStorage.setItem("bmsgate-setup-later", "1");

  const found = [];  // {port, protocol, address, variant, cell_count, soc}
  // the protocols as they describe themselves (bmsgate_bms.registry)
  const protocols = await api("api/protocols");
  const labels = Object.fromEntries(protocols.map((p) => [p.name, p.label]));
  for (const p of protocols) $("protocol").add(new Option(p.label, p.name));
  const labelOf = (f) => `${labels[f.protocol] || f.protocol}${f.variant ? " " + f.variant : ""}`;

  function portRow(p) {
    const name = p.by_id || p.device;
    const busy = p.reader ? `polled (${p.reader})` : p.held_by.join(", ");
    const tr = document.createElement("tr");
    if (p.reader) tr.className = "held";
    tr.innerHTML = `<td><input type="checkbox" aria-label="use ${esc(name)}" ${p.reader ? "disabled" : ""}></td>
      <td><code>${esc(name)}</code>${p.by_id ? `<br><small class="muted">${esc(p.device)}</small>` : ""}</td>
      <td>${esc(p.description || "")}${p.vid_pid ? ` <small class="muted">${esc(p.vid_pid)}</small>` : ""}</td>
      <td>${esc(busy || "free")}</td>`;
    tr.dataset.port = name;
    $("ports").tBodies[0].append(tr);
    return tr;
  }
  for (const p of await api("api/setup/ports")) portRow(p);
  if (!$("ports").tBodies[0].rows.length) {
    $("ports").tBodies[0].innerHTML = `<tr class="none"><td colspan="4" class="muted">No serial port found: plug in the adapter, or type its path below.</td></tr>`;
  }
  $("add-port").onclick = () => {
    const path = $("other").value.trim();
    if (!path) return;
    $("ports").querySelector("tr.none")?.remove();
    const tr = portRow({ device: path, by_id: null, description: "added by hand", vid_pid: null, held_by: [], reader: null });
    tr.querySelector("input").checked = true;
    $("other").value = "";
  };

  async function scanOne(port) {
    const body = { port, protocols: $("protocol").value ? [$("protocol").value] : null };
    await api("api/setup/scan", { method: "POST", body });
    const bar = $("progress");
    bar.hidden = false;
    for (;;) {
      await sleep(400);
      const job = await api("api/setup/scan");
      bar.max = job.total; bar.value = job.done;
      message($("scan-msg"), `${port}: ${job.done} of ${job.total} probes, ${job.found.length} BMS found`, true);
      if (!job.running) {
        if (job.error) throw new Error(job.error);
        return job.found.map((f) => ({ ...f, port }));
      }
    }
  }

  $("scan").onclick = async () => {
    const ports = [...$("ports").querySelectorAll("tbody tr")]
      .filter((tr) => tr.querySelector("input:checked")).map((tr) => tr.dataset.port);
    if (!ports.length) { message($("scan-msg"), "Pick a port first.", false); return; }
    $("scan").disabled = true;
    found.length = 0;
    try {
      for (const port of ports) {
        const onPort = await scanOne(port);
        // one protocol per bus: keep what answered first
        found.push(...onPort.filter((f) => f.protocol === (onPort[0] || {}).protocol));
      }
      if (!found.length) throw new Error("No BMS answered. Check the wiring (A/B, TX/RX), the power and the protocol.");
      message($("scan-msg"), `Found ${found.length} BMS: ` + found.map((f) =>
        `${labelOf(f)} at address ${f.address} on ${f.port} (${f.cell_count} cells${f.soc !== undefined ? ", " + f.soc + " %" : ""})`).join("; "), true);
      showNames();
    } catch (err) {
      message($("scan-msg"), err.message, false);
    } finally {
      $("scan").disabled = false;
    }
  };

  function showNames() {
    $("packs").innerHTML = found.map((f, i) => `<div class="row"><label>${esc(labelOf(f))} #${f.address}, ${f.cell_count} cells
      <input class="pack-name" data-i="${i}" value="Pack ${i + 1}" maxlength="60"></label></div>`).join("");
    $("bank-box").hidden = found.length < 2;
    $("bank-members").innerHTML = found.map((f, i) =>
      `<label class="check"><input type="checkbox" class="bank-member" data-i="${i}"> Pack ${i + 1}</label>`).join("");
    for (const input of document.querySelectorAll(".pack-name")) {
      input.oninput = () => {
        document.querySelector(`.bank-member[data-i="${input.dataset.i}"]`).parentElement.lastChild.textContent = " " + input.value;
      };
    }
    for (const id of ["step-names", "step-outputs", "step-write"]) $(id).hidden = false;
  }

  $("notify-test").onclick = async () => {
    try {
      await api("api/setup/notify-test", { method: "POST", body: { url: $("notify").value.trim() } });
      message($("out-msg"), "Test message sent.", true);
    } catch (err) { message($("out-msg"), err.message, false); }
  };

  $("find-tz").onclick = async () => {
    try {
      const q = new URLSearchParams({ latitude: $("lat").value.trim(), longitude: $("lon").value.trim() });
      $("tz").textContent = (await api("api/setup/timezone?" + q)).timezone;
    } catch (err) { message($("out-msg"), err.message, false); }
  };

  function answers() {
    const names = [...document.querySelectorAll(".pack-name")].map((i) => i.value.trim());
    const buses = [];
    found.forEach((f, i) => {
      let bus = buses.find((b) => b.port === f.port);
      if (!bus) { bus = { port: f.port, packs: [] }; buses.push(bus); }
      bus.packs.push({ protocol: f.protocol, address: f.address, variant: f.variant || null, name: names[i] });
    });
    const members = [...document.querySelectorAll(".bank-member:checked")].map((c) => names[Number(c.dataset.i)]);
    const text = (id) => $(id).value.trim() || null;
    const number = (id) => (text(id) === null ? null : Number(text(id)));
    return {
      buses,
      banks: members.length >= 2 ? [{ name: $("bank-name").value.trim() || "Bank", packs: members }] : [],
      broker: text("broker"), broker_username: text("broker-user"), broker_password: text("broker-password"),
      home_assistant: $("ha").checked, modbus: $("modbus").checked,
      influx_url: text("influx"), influx_token: text("influx-token"),
      notify_urls: text("notify") ? [text("notify")] : [],
      latitude: number("lat"), longitude: number("lon"), timezone: $("tz").textContent || null,
    };
  }

  async function watchPacks(ids) {
    const live = $("live");
    live.innerHTML = ids.map((id) => `<li data-pack="${esc(id)}">${esc(id)}: waiting for the first reading…</li>`).join("");
    for (let i = 0; i < 120; i++) {
      await sleep(1000);
      let waiting = 0;
      for (const id of ids) {
        const li = live.querySelector(`[data-pack="${id}"]`);
        if (li.dataset.seen) continue;
        try {
          const s = await fetch(`api/packs/${encodeURIComponent(id)}/state`, { credentials: "same-origin" });
          if (s.ok) {
            const st = await s.json();
            li.dataset.seen = "1";
            li.innerHTML = `<b>${esc(st.name || id)}</b>: ${bms.fmt(st.soc, 0, "%")}, ${bms.fmt(st.pack_voltage, 2, "V")}, ${bms.fmt(st.current, 1, "A")} · <a href="index.html">Status</a>`;
            continue;
          }
        } catch (e) { /* the API restarts with the new configuration */ }
        waiting++;
      }
      if (!waiting) return;
    }
  }

  $("write").onclick = async () => {
    $("write").disabled = true;
    try {
      const done = await api("api/setup/apply" + (status.needed ? "" : "?replace=true"), { method: "POST", body: answers() });
      message($("write-msg"), `Written to ${done.config_file}. Polling starts now.`, true);
      $("written").textContent = done.yaml;
      $("written").hidden = false;
      sessionStorage.removeItem("bmsgate-setup-later");
      await watchPacks(done.packs);
    } catch (err) {
      message($("write-msg"), err.message, false);
    } finally {
      $("write").disabled = false;
    }
  };
})();
