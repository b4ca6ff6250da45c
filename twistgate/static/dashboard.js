// twistgate dashboard: polls the admin API, draws the last 15 minutes, and
// lets the operator drain targets, reload and manage API keys.
// No dependencies, no build step, nothing loaded from elsewhere (the page's
// Content-Security-Policy allows only the admin listener).  The token never
// goes into a URL the server sees: it comes from a login form or the URL
// *fragment* (#token=..., never sent over the network), is kept in
// sessionStorage and sent as "Authorization: Bearer".
"use strict";
(function () {
  const KEY = "twistgate.admin.token";
  const THEME = "twistgate.theme";
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.hash.slice(1));
  const interval = Math.min(60000, Math.max(500, parseInt(params.get("interval") || "2000", 10) || 2000));
  if (params.get("token")) {
    sessionStorage.setItem(KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const $ = (id) => document.getElementById(id);
  const state = { refreshes: 0, timer: null, route: null, routes: [], stats: null, busy: false, keys: false, keysDue: true, again: false };

  // -- small helpers ---------------------------------------------------------

  function token() { return sessionStorage.getItem(KEY); }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function cell(row, text, cls) {
    const td = el("td", text, cls);
    row.appendChild(td);
    return td;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "-";
    return Number(value).toFixed(digits === undefined ? 1 : digits);
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 120) return s + "s";
    if (s < 7200) return Math.floor(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d";
  }

  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function setStatus(text, cls) {
    const node = $("status");
    node.textContent = text;
    node.className = "badge " + cls;
  }

  function notice(text, kind) {
    const node = $("notice");
    node.textContent = text;
    node.className = "notice " + (kind || "");
    node.hidden = false;
  }

  async function api(path, options) {
    const init = Object.assign({ cache: "no-store" }, options || {});
    init.headers = Object.assign({ Authorization: "Bearer " + token() }, init.headers || {});
    const response = await fetch(path, init);
    if (response.status === 401) {
      const err = new Error("unauthorized");
      err.unauthorized = true;
      throw err;
    }
    const type = response.headers.get("content-type") || "";
    const body = type.startsWith("application/json") ? await response.json() : null;
    return { status: response.status, ok: response.ok, body: body };
  }

  async function read(path) {
    const answer = await api(path);
    if (!answer.ok && answer.status !== 503) throw new Error(path + ": HTTP " + answer.status);
    return answer.body;
  }

  // -- theme -------------------------------------------------------------------

  function applyTheme(theme) {
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    const button = $("theme-button");
    button.textContent = "Theme: " + theme;
    button.setAttribute("aria-label", "Colour theme: " + (theme === "auto" ? "follows the system" : theme) + " (change)");
  }

  $("theme-button").addEventListener("click", () => {
    const order = ["auto", "light", "dark"];
    const next = order[(order.indexOf(localStorage.getItem(THEME) || "auto") + 1) % order.length];
    localStorage.setItem(THEME, next);
    applyTheme(next);
  });
  applyTheme(localStorage.getItem(THEME) || "auto");

  // -- charts: a tiny SVG line chart -----------------------------------------------

  const W = 320, H = 150, L = 46, R = 10, T = 10, B = 24;

  function nice(max) {
    if (!(max > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(max)));
    for (const step of [1, 2, 2.5, 5, 10]) if (max <= step * power) return step * power;
    return 10 * power;
  }

  function svgNode(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function tickLabel(value, unit) {
    if (unit === "%") return fmt(value, value < 10 && value > 0 ? 1 : 0) + "%";
    if (value >= 1000) return fmt(value / 1000, 1) + "k";
    return fmt(value, value < 10 && value !== 0 && value % 1 !== 0 ? 1 : 0);
  }

  // series: [{label, cls, values: [number|null]}]; times: the points' ends (seconds)
  function drawChart(figure, times, series, unit) {
    const svg = figure.querySelector("svg");
    svg.replaceChildren();
    const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
    const top = unit === "%" ? Math.min(100, nice(Math.max(1, ...all))) : nice(Math.max(0, ...all));
    const end = times.length ? times[times.length - 1] : 0;
    const start = end - 900;
    const x = (t) => L + ((t - start) / 900) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    for (const fraction of [0, 0.5, 1]) {
      const value = top * fraction;
      svg.appendChild(svgNode("line", { x1: L, x2: W - R, y1: y(value), y2: y(value), class: "grid" }));
      svg.appendChild(svgNode("text", { x: L - 4, y: y(value) + 4, class: "axis", "text-anchor": "end" }, tickLabel(value, unit)));
    }
    for (const back of [900, 600, 300, 0]) {
      const t = end - back;
      svg.appendChild(svgNode("line", { x1: x(t), x2: x(t), y1: T, y2: H - B, class: "grid" }));
      const label = back === 0 ? "now" : "-" + back / 60 + " min";
      const anchor = back === 900 ? "start" : back === 0 ? "end" : "middle";
      svg.appendChild(svgNode("text", { x: x(t), y: H - 6, class: "axis", "text-anchor": anchor }, label));
    }
    let drawn = 0;
    series.forEach((s, index) => {
      const cls = s.cls || "s" + index;
      let d = "";
      const known = (i) => i >= 0 && i < s.values.length && s.values[i] !== null && s.values[i] !== undefined && times[i] >= start;
      s.values.forEach((v, i) => {
        if (!known(i)) return;
        const px = x(times[i]).toFixed(1), py = y(Math.min(v, top)).toFixed(1);
        d += (known(i - 1) ? "L" : "M") + px + " " + py + " ";
        drawn += 1;
        if (!known(i - 1) && !known(i + 1)) {  // a point alone (the first bucket, or between gaps): a dot
          svg.appendChild(svgNode("circle", { cx: px, cy: py, r: 2.5, class: "dot " + cls }));
        }
      });
      svg.appendChild(svgNode("path", { d: d.trim(), class: "line " + cls }));
    });
    const last = series.map((s) => {
      const values = s.values.filter((v) => v !== null && v !== undefined);
      const value = values.length ? fmt(values[values.length - 1], unit === "/s" ? 2 : 1) + (unit === "%" ? "%" : " " + unit) : "-";
      return (s.label ? s.label + " " : "") + value;
    }).join(", ");
    figure.querySelector(".latest").textContent = last;
    svg.setAttribute("aria-label", figure.dataset.title + " over the last 15 minutes; latest: " + last);
    svg.dataset.points = drawn;
    svg.dataset.sum = all.reduce((a, b) => a + b, 0).toFixed(3);
  }

  const CHARTS = [
    { key: "rate", title: "Requests", unit: "/s", series: [{ label: "", field: "rate_per_second" }] },
    { key: "latency", title: "Latency", unit: "ms", series: [{ label: "p50", field: "p50_ms" }, { label: "p99", field: "p99_ms", cls: "s1" }] },
    { key: "errors", title: "Errors (5xx)", unit: "%", series: [{ label: "errors", field: "error_rate", scale: 100, cls: "bad" }] },
    { key: "cache", title: "Cache hits", unit: "%", series: [{ label: "hits", field: "cache_hit_rate", scale: 100, cls: "s2" }] },
  ];

  function makeCharts(container, prefix) {
    for (const chart of CHARTS) {
      const figure = el("figure", undefined, "chart");
      figure.id = prefix + "-" + chart.key;
      figure.dataset.title = chart.title;
      const caption = el("figcaption");
      caption.appendChild(el("span", chart.title + " (" + chart.unit + ")", "title"));
      caption.appendChild(el("span", "-", "latest"));
      figure.appendChild(caption);
      figure.appendChild(svgNode("svg", { viewBox: "0 0 " + W + " " + H, role: "img" }));
      container.appendChild(figure);
    }
  }

  function drawSeries(prefix, points) {
    const times = points.map((p) => p.at);
    for (const chart of CHARTS) {
      const series = chart.series.map((s) => ({
        label: s.label, cls: s.cls,
        values: points.map((p) => (p[s.field] === null || p[s.field] === undefined ? null : p[s.field] * (s.scale || 1))),
      }));
      drawChart($(prefix + "-" + chart.key), times, series, chart.unit);
    }
  }

  makeCharts($("charts-total"), "chart-total");
  makeCharts($("charts-route"), "chart-route");

  // -- figures -----------------------------------------------------------------------

  function renderStats(stats) {
    state.stats = stats;
    const t = stats.total;
    $("rate").textContent = fmt(t.rate_per_second, 2);
    $("p50").textContent = fmt(t.latency_ms.p50);
    $("p95").textContent = fmt(t.latency_ms.p95);
    $("p99").textContent = fmt(t.latency_ms.p99);
    $("inflight").textContent = stats.in_flight;
    $("connections").textContent = stats.open_connections;
    $("requests").textContent = t.requests;
    $("errors").textContent = t.errors;
    const statuses = $("statuses");
    statuses.replaceChildren();
    for (const [klass, count] of Object.entries(t.status)) {
      const div = el("div", klass, "status s" + klass);
      div.id = "status-" + klass;
      div.dataset.count = count;
      div.appendChild(el("b", count));
      statuses.appendChild(div);
    }
  }

  function matchText(r) {
    const parts = [];
    if (r.host && r.host !== "*") parts.push(r.host);
    parts.push(r.path);
    if (r.methods && r.methods !== "*") parts.push("[" + r.methods + "]");
    return parts.join(" ");
  }

  function renderRoutes(config, stats) {
    const body = $("routes").tBodies[0];
    body.replaceChildren();
    const seen = new Set();
    const rows = config.routes.map((r) => ({ name: r.name, config: r }));
    for (const name of Object.keys(stats.routes)) if (!rows.some((r) => r.name === name)) rows.push({ name: name, config: null });
    state.routes = rows.map((r) => r.name);
    for (const r of rows) {
      seen.add(r.name);
      const s = stats.routes[r.name];
      const row = el("tr");
      row.dataset.route = r.name;
      row.dataset.requests = s ? s.requests : 0;
      row.dataset.idle = s ? "false" : "true";
      if (r.name === state.route) row.className = "selected";
      const name = cell(row, r.name);
      name.className = "name";
      cell(row, r.config ? matchText(r.config) : "-", "mono");
      cell(row, r.config ? r.config.upstream || "-" : "-");
      const policies = cell(row, "");
      for (const p of (r.config ? r.config.policies : [])) policies.appendChild(el("span", p, "chip"));
      if (!r.config) policies.textContent = r.name === "(no route)" ? "unmatched requests" : "not configured now";
      cell(row, s ? s.requests : 0);
      cell(row, s ? fmt(s.rate_per_second, 2) : "-");
      cell(row, s ? fmt(s.latency_ms.p50) : "-");
      cell(row, s ? fmt(s.latency_ms.p95) : "-");
      cell(row, s ? fmt(s.latency_ms.p99) : "-");
      cell(row, s ? s.status["2xx"] || 0 : 0, "s2xx");
      cell(row, s ? s.status["4xx"] || 0 : 0, "s4xx");
      cell(row, s ? s.status["5xx"] || 0 : 0, "s5xx");
      cell(row, s && s.cache.hit_rate !== null ? fmt(s.cache.hit_rate * 100, 0) + "%" : "-");
      const chart = el("button", "chart", "link");
      chart.type = "button";
      chart.setAttribute("aria-label", "Chart route " + r.name);
      chart.setAttribute("aria-pressed", r.name === state.route ? "true" : "false");
      chart.addEventListener("click", () => selectRoute(r.name, true));
      cell(row, "").appendChild(chart);
      body.appendChild(row);
    }
    const select = $("route-select");
    const options = Array.from(select.options).map((o) => o.value).join("\n");
    if (options !== state.routes.join("\n")) {
      select.replaceChildren(...state.routes.map((name) => el("option", name)));
    }
    if (state.route === null || !state.routes.includes(state.route)) {
      const busiest = Object.entries(stats.routes).filter(([n]) => state.routes.includes(n)).sort((a, b) => b[1].requests - a[1].requests)[0];
      state.route = busiest ? busiest[0] : state.routes[0] || null;
    }
    if (state.route !== null) select.value = state.route;
  }

  function selectRoute(name, focus) {
    state.route = name;
    $("route-select").value = name;
    refresh();
    if (focus) $("route-select").focus();
  }

  $("route-select").addEventListener("change", (event) => selectRoute(event.target.value, false));

  function renderHistory(history) {
    drawSeries("chart-total", history.total);
    const points = state.route !== null ? history.routes[state.route] : null;
    drawSeries("chart-route", points || history.total.map((p) => ({ at: p.at })));
    $("charts-route").dataset.route = state.route || "";
  }

  function targetState(t) {
    if (t.draining) return "draining";
    if (t.healthy === false) return "down";
    if (t.ejected) return "ejected";
    return "up";
  }

  function renderUpstreams(data) {
    const body = $("upstreams").tBodies[0];
    body.replaceChildren();
    for (const u of data.upstreams) {
      for (const t of u.targets) {
        const row = el("tr");
        const health = targetState(t);
        row.dataset.upstream = u.name;
        row.dataset.target = t.url;
        row.dataset.state = health;
        cell(row, u.name);
        cell(row, t.url + (t.backup ? " (backup)" : ""), "mono");
        cell(row, health, "state-" + health);
        const breaker = t.breaker || "n/a";
        cell(row, breaker, "breaker-" + breaker);
        cell(row, fmt(t.ewma_ms));
        cell(row, t.in_flight === null || t.in_flight === undefined ? "-" : t.in_flight);
        cell(row, t.weight === undefined ? "-" : t.weight);
        const error = cell(row, t.last_error || "-", t.last_error ? "last-error" : "");
        if (t.last_error) error.title = t.last_error;
        const draining = Boolean(t.draining);
        const button = el("button", draining ? "Undrain…" : "Drain…", "action small");
        button.type = "button";
        button.dataset.action = draining ? "undrain" : "drain";
        button.setAttribute("aria-label", (draining ? "Undrain " : "Drain ") + t.url + " of upstream " + u.name);
        button.addEventListener("click", () => drain(u.name, t.url, !draining));
        cell(row, "").appendChild(button);
        body.appendChild(row);
      }
    }
  }

  const TRIGGERS = { admin: "API", SIGHUP: "SIGHUP", "file changed": "file watch" };
  const CHANGES = [
    ["routes_added", "routes added"], ["routes_removed", "routes removed"], ["routes_changed", "routes changed"],
    ["routes_moved", "routes moved"], ["upstreams_added", "upstreams added"], ["upstreams_removed", "upstreams removed"],
    ["upstreams_rebuilt", "upstreams rebuilt"],
  ];

  function renderLastReload(last, now) {
    const box = $("last-reload");
    box.replaceChildren();
    if (!last) {
      box.appendChild(el("p", "No reload since start.", "meta"));
      box.dataset.ok = "";
      return;
    }
    box.dataset.ok = last.ok ? "true" : "false";
    box.dataset.generation = last.generation;
    box.dataset.trigger = TRIGGERS[last.reason] || last.reason;
    const head = el("p");
    head.appendChild(el("span", last.ok ? "applied" : "refused", "badge " + (last.ok ? "ok" : "bad")));
    head.appendChild(document.createTextNode(
      " " + clock(last.at) + " (" + duration(now - last.at) + " ago) by " + (TRIGGERS[last.reason] || last.reason) +
      (last.ok ? ": generation " + last.generation : "; generation " + last.generation + " keeps serving")));
    box.appendChild(head);
    if (last.ok) {
      const list = el("ul", undefined, "changes");
      for (const [key, label] of CHANGES) {
        const names = (last.changes || {})[key] || [];
        if (!names.length) continue;
        const item = el("li");
        item.appendChild(el("b", label + ": "));
        item.appendChild(document.createTextNode(names.join(", ")));
        list.appendChild(item);
      }
      if (!list.children.length) list.appendChild(el("li", "nothing changed in routes or upstreams", "meta"));
      box.appendChild(list);
      for (const warning of last.warnings || []) box.appendChild(el("p", "warning: " + warning, "warn"));
    } else {
      box.appendChild(el("p", last.message || "", "error"));
      const issues = el("ul", undefined, "issues");
      for (const issue of last.issues || []) issues.appendChild(el("li", issue.text || issue.message, "mono"));
      if (issues.children.length) box.appendChild(issues);
    }
  }

  function auditWhat(entry) {
    const d = entry.details || {};
    if (entry.action === "drain" || entry.action === "undrain") return [d.upstream, d.target].filter(Boolean).join(" ");
    if (entry.action === "reload") return (d.generation !== undefined ? "generation " + d.generation : "") + (entry.via !== "api" ? " (" + entry.via + ")" : "");
    if (entry.action === "key_create") return [d.key_id, d.consumer].filter(Boolean).join(" for ");
    if (entry.action === "key_revoke") return d.key_id || "";
    return "";
  }

  function renderAudit(audit) {
    const body = $("audit").tBodies[0];
    body.replaceChildren();
    for (const entry of audit.entries) {
      const row = el("tr");
      row.dataset.action = entry.action;
      row.dataset.outcome = entry.outcome;
      cell(row, clock(entry.at));
      cell(row, entry.action.replace("_", " "));
      cell(row, entry.outcome + (entry.status ? " " + entry.status : ""), "outcome-" + entry.outcome);
      cell(row, auditWhat(entry), "mono");
      cell(row, entry.client || entry.via);
      body.appendChild(row);
    }
    if (!audit.entries.length) {
      const row = el("tr");
      const empty = cell(row, "No admin action yet.", "meta");
      empty.colSpan = 5;
      body.appendChild(row);
    }
  }

  function renderKeys(answer) {
    const body = $("keys").tBodies[0];
    body.replaceChildren();
    for (const k of answer.keys) {
      const row = el("tr");
      row.dataset.key = k.id;
      cell(row, k.id, "mono");
      cell(row, k.consumer);
      cell(row, k.authenticator);
      cell(row, k.created_at || "-");
      cell(row, k.last_used_at || "never");
      cell(row, k.expires_at || "never");
      cell(row, k.revoked_at ? "revoked" : k.active === false ? "expired" : "active", k.revoked_at || k.active === false ? "state-down" : "state-up");
      const action = cell(row, "");
      if (!k.revoked_at) {
        const button = el("button", "Revoke…", "action small");
        button.type = "button";
        button.setAttribute("aria-label", "Revoke key " + k.id + " of " + k.consumer);
        button.addEventListener("click", () => revoke(k));
        action.appendChild(button);
      }
      body.appendChild(row);
    }
  }

  function renderHealth(health) {
    $("version").textContent = health.version;
    $("generation").textContent = health.generation;
    $("uptime").textContent = duration(health.uptime_seconds);
    $("workers-meta").textContent = health.workers ? "· " + health.workers.length + " workers" : "";
    setStatus(health.status, health.status === "ok" ? "ok" : "bad");
    state.keys = Boolean(health.api_keys);
    $("keys-panel").hidden = !state.keys;
    $("reload-button").disabled = false;
  }

  // -- refreshing ------------------------------------------------------------------------

  async function refresh() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    try {
      const [stats, upstreams, health, routes, audit] = await Promise.all([
        read("/admin/stats"), read("/admin/upstreams"), read("/admin/health"), read("/admin/routes"), read("/admin/audit?limit=15"),
      ]);
      renderHealth(health);
      renderStats(stats);
      renderRoutes(routes, stats);
      const history = await read("/admin/stats/history" + (state.route !== null ? "?route=" + encodeURIComponent(state.route) : ""));
      renderHistory(history);
      renderUpstreams(upstreams);
      renderLastReload(health.last_reload, history.now);
      renderAudit(audit);
      if (state.keys && (state.keysDue || state.refreshes % 5 === 0)) {
        state.keysDue = false;
        renderKeys(await read("/admin/keys"));
      }
      state.refreshes += 1;
      $("refreshes").textContent = state.refreshes;
      $("refreshes").dataset.count = state.refreshes;
      $("updated").textContent = new Date().toLocaleTimeString();
      $("error").textContent = "";
      $("board").hidden = false;
      $("login").hidden = true;
    } catch (err) {
      if (err.unauthorized) {
        sessionStorage.removeItem(KEY);
        stop();
        showLogin("That token was refused.");
        return;
      }
      $("error").textContent = "Update failed: " + err.message;
      setStatus("unreachable", "bad");
    } finally {
      state.busy = false;
      if (state.again) { state.again = false; setTimeout(refresh, 0); }
    }
  }

  function start() {
    stop();
    refresh();
    state.timer = setInterval(refresh, interval);
  }

  function stop() {
    if (state.timer !== null) clearInterval(state.timer);
    state.timer = null;
  }

  function showLogin(message) {
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setStatus("locked", "");
    $("token").focus();
  }

  // -- actions: each asks first, then says what happened -------------------------------------

  function confirmAction(title, text, verb) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = verb;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.removeEventListener("cancel", cancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const ok = () => done(true);
      const cancel = (event) => { if (event) event.preventDefault(); done(false); };
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.addEventListener("cancel", cancel);
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function act(what, request, describe) {
    $("notice").hidden = true;  // the previous result goes: what shows next is this action's
    try {
      const answer = await request();
      if (answer.ok) notice(describe(answer.body), "ok");
      else notice(what + " refused: " + ((answer.body && answer.body.message) || "HTTP " + answer.status), "bad");
      return answer;
    } catch (err) {
      if (err.unauthorized) { stop(); showLogin("That token was refused."); return null; }
      notice(what + " failed: " + err.message, "bad");
      return null;
    } finally {
      state.keysDue = true;  // the keys list is read again on the next refresh
      refresh();
    }
  }

  async function drain(upstream, url, on) {
    const verb = on ? "Drain" : "Undrain";
    const text = on
      ? "Target " + url + " of upstream " + upstream + " gets no new requests; the requests in flight on it finish. Its health checks go on."
      : "Target " + url + " of upstream " + upstream + " takes requests again at once.";
    if (!(await confirmAction(verb + " target?", text, verb))) return;
    await act(verb, () => api("/admin/upstreams/" + encodeURIComponent(upstream) + "/" + verb.toLowerCase(), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ target: url }),
    }), (body) => (on ? "Drained " : "Undrained ") + body.target + " (" + body.upstream + ")" +
      (on ? ": " + body.in_flight + " in flight finishing" : "") + (body.warning ? ". Warning: " + body.warning : "") + ".");
  }

  $("reload-button").addEventListener("click", async () => {
    if (!(await confirmAction("Reload the configuration?",
      "The gateway re-reads its configuration file and swaps to it if it is valid; if not, the one serving now keeps serving.",
      "Reload"))) return;
    const answer = await act("Reload", () => api("/admin/reload", { method: "POST" }),
      (body) => "Reloaded: generation " + body.generation + (body.warnings && body.warnings.length ? " (" + body.warnings.join("; ") + ")" : "") + ".");
    if (answer && !answer.ok && answer.body && answer.body.issues) {
      notice("Reload refused: " + answer.body.message + " " + answer.body.issues.map((i) => i.text).join(" "), "bad");
    }
  });

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const consumer = $("key-consumer").value.trim();
    const body = { consumer: consumer };
    if ($("key-expires").value.trim()) body.expires_in = $("key-expires").value.trim();
    if ($("key-authenticator").value.trim()) body.authenticator = $("key-authenticator").value.trim();
    if (!(await confirmAction("Create an API key?", "A new key for consumer " + consumer + (body.expires_in ? ", expiring in " + body.expires_in : "") + ".", "Create"))) return;
    const answer = await act("Key creation", () => api("/admin/keys", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }), (created) => "Created key " + created.id + " for " + created.consumer + ".");
    if (answer && answer.ok) {
      $("key-form").reset();
      $("secret-consumer").textContent = answer.body.consumer;
      $("secret-key").value = answer.body.key;
      $("secret").showModal();
      $("secret-key").select();
    }
  });

  $("secret-copy").addEventListener("click", async () => {
    $("secret-key").select();
    try { await navigator.clipboard.writeText($("secret-key").value); notice("The key is in the clipboard.", "ok"); }
    catch (err) { notice("Copy it from the selected field (the clipboard is not available here).", "warn"); }
  });

  function closeSecret() {
    $("secret-key").value = "";  // shown once: gone from the page when closed
    if ($("secret").open) $("secret").close();
  }
  $("secret-close").addEventListener("click", closeSecret);
  $("secret").addEventListener("close", closeSecret);

  async function revoke(k) {
    if (!(await confirmAction("Revoke API key?", "Key " + k.id + " of " + k.consumer + " stops working at once, on every worker.", "Revoke"))) return;
    await act("Revocation", () => api("/admin/keys/" + encodeURIComponent(k.id), { method: "DELETE" }), () => "Revoked key " + k.id + ".");
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("token").value = "";
    start();
  });

  if (token()) start(); else showLogin("");
})();
