// twistgate dashboard: polls the admin API and shows live figures.
// No dependencies, no build step.  The token never goes into a URL the
// server sees: it comes from a login form or the URL *fragment* (#token=...,
// never sent over the network), is kept in sessionStorage and sent as
// "Authorization: Bearer".
"use strict";
(function () {
  const KEY = "twistgate.admin.token";
  const params = new URLSearchParams(location.hash.slice(1));
  let interval = Math.min(60000, Math.max(500, parseInt(params.get("interval") || "2000", 10) || 2000));
  if (params.get("token")) {
    sessionStorage.setItem(KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const $ = (id) => document.getElementById(id);
  const history_ = [];
  let refreshes = 0;
  let timer = null;

  function token() { return sessionStorage.getItem(KEY); }

  function showLogin(message) {
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setStatus("locked", "");
  }

  function setStatus(text, cls) {
    const el = $("status");
    el.textContent = text;
    el.className = "badge " + cls;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
    if (response.status === 401) {
      const err = new Error("unauthorized");
      err.unauthorized = true;
      throw err;
    }
    if (!response.ok && response.status !== 503) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "-";
    return Number(value).toFixed(digits === undefined ? 1 : digits);
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    if (s < 120) return s + "s";
    if (s < 7200) return Math.floor(s / 60) + "m";
    return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function spark(rate) {
    history_.push(rate);
    while (history_.length > 60) history_.shift();
    const max = Math.max(1, ...history_);
    const step = history_.length > 1 ? 120 / (history_.length - 1) : 120;
    const d = history_.map((v, i) => (i ? "L" : "M") + (i * step).toFixed(1) + " " + (30 - (v / max) * 28).toFixed(1)).join(" ");
    $("spark-path").setAttribute("d", d);
  }

  function renderStats(stats) {
    const t = stats.total;
    $("rate").textContent = fmt(t.rate_per_second, 2);
    $("p50").textContent = fmt(t.latency_ms.p50);
    $("p95").textContent = fmt(t.latency_ms.p95);
    $("p99").textContent = fmt(t.latency_ms.p99);
    $("inflight").textContent = stats.in_flight;
    $("connections").textContent = stats.open_connections;
    $("requests").textContent = t.requests;
    $("errors").textContent = t.errors;
    spark(t.rate_per_second);
    const statuses = $("statuses");
    statuses.replaceChildren();
    for (const [klass, count] of Object.entries(t.status)) {
      const div = document.createElement("div");
      div.className = "status s" + klass;
      div.id = "status-" + klass;
      div.dataset.count = count;
      div.textContent = klass;
      const b = document.createElement("b");
      b.textContent = count;
      div.appendChild(b);
      statuses.appendChild(div);
    }
    const body = $("routes").tBodies[0];
    body.replaceChildren();
    for (const [name, r] of Object.entries(stats.routes)) {
      const row = document.createElement("tr");
      row.dataset.route = name;
      row.dataset.requests = r.requests;
      cell(row, name);
      cell(row, r.requests);
      cell(row, fmt(r.rate_per_second, 2));
      cell(row, fmt(r.latency_ms.p50));
      cell(row, fmt(r.latency_ms.p95));
      cell(row, fmt(r.latency_ms.p99));
      cell(row, r.status["2xx"] || 0, "s2xx");
      cell(row, r.status["4xx"] || 0, "s4xx");
      cell(row, r.status["5xx"] || 0, "s5xx");
      cell(row, r.cache.hit_rate === null ? "-" : fmt(r.cache.hit_rate * 100, 0) + "%");
      body.appendChild(row);
    }
  }

  function renderUpstreams(data) {
    const body = $("upstreams").tBodies[0];
    body.replaceChildren();
    for (const u of data.upstreams) {
      for (const t of u.targets) {
        const row = document.createElement("tr");
        row.dataset.upstream = u.name;
        row.dataset.target = t.url;
        cell(row, u.name);
        cell(row, t.url);
        cell(row, t.healthy === false ? "unhealthy" : "healthy", t.healthy === false ? "unhealthy" : "healthy");
        const breaker = t.breaker || "n/a";
        cell(row, breaker, "breaker-" + breaker);
        cell(row, t.in_flight === null || t.in_flight === undefined ? "-" : t.in_flight);
        cell(row, t.weight === undefined ? "-" : t.weight);
        body.appendChild(row);
      }
    }
  }

  function renderHealth(health) {
    $("version").textContent = health.version;
    $("generation").textContent = health.generation;
    $("uptime").textContent = duration(health.uptime_seconds);
    setStatus(health.status, health.status === "ok" ? "ok" : "bad");
  }

  async function refresh() {
    try {
      const [stats, upstreams, health] = await Promise.all([api("/admin/stats"), api("/admin/upstreams"), api("/admin/health")]);
      renderStats(stats);
      renderUpstreams(upstreams);
      renderHealth(health);
      refreshes += 1;
      $("refreshes").textContent = refreshes;
      $("refreshes").dataset.count = refreshes;
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
    }
  }

  function start() {
    stop();
    refresh();
    timer = setInterval(refresh, interval);
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("token").value = "";
    start();
  });

  if (token()) start(); else showLogin("");
})();
