// The meshactors dashboard: polls the JSON API, renders with DOM nodes (never HTML from data) and draws its own SVG.
"use strict";

const POLL_MS = 1500;
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff9bce", "#8a96a3"];
const SVG = "http://www.w3.org/2000/svg";
let timer = null;
let eventsSeq = 0;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmt(v, digits = 1) { return v == null ? "-" : Number(v).toFixed(digits); }
function age(s) { return s == null ? "-" : s < 120 ? `${Math.round(s)}s` : `${Math.round(s / 60)}m`; }

class Unauthorized extends Error {}

async function api(path, options) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (res.status === 401) throw new Unauthorized("401");
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function setLive(ok, text) {
  const live = $("live");
  live.className = "live " + (ok ? "ok" : "bad");
  live.textContent = text;
}

// ---- sign in ------------------------------------------------------------------------------------------------------

async function signIn(token) {
  const who = await api("/api/session", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
  });
  $("who").textContent = who.principal;
  return who;
}

function showSignIn(message) {
  stopPolling();
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  setLive(false, "signed out");
}

// ---- views --------------------------------------------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [name, ...rest] = hash.split("/");
  return { name: ["overview", "vip", "proxies", "health", "events"].includes(name) ? name : "overview",
           arg: decodeURIComponent(rest.join("/")) };
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderOverview(data) {
  const filter = $("filter").value.trim().toLowerCase();
  const rows = data.vips.filter((r) => !filter || r.vip.includes(filter)).map((r) => {
    const health = r.up === 0 ? "bad" : r.up < r.total ? "warn" : "ok";
    const tr = el("tr", { class: "clickable", "data-vip": r.vip },
      el("td", {}, el("a", { href: "#/vip/" + encodeURIComponent(r.vip) }, r.vip)),
      el("td", { class: "num " + health, "data-field": "instances" }, `${r.up} / ${r.total}`),
      el("td", { class: "num" }, fmt(r.rps)),
      el("td", { class: "num" + (r.error_pct ? " bad" : "") }, fmt(r.error_pct, 2)),
      el("td", { class: "num" }, fmt(r.p50_ms)),
      el("td", { class: "num" }, fmt(r.p99_ms)));
    tr.addEventListener("click", () => { location.hash = "#/vip/" + encodeURIComponent(r.vip); });
    return tr;
  });
  fill($("overview-table").tBodies[0], rows);
  $("overview-empty").hidden = rows.length > 0;
}

function renderVip(d) {
  $("vip-title").textContent = d.vip;
  fill($("vip-instances").tBodies[0], d.instances.map((i) => el("tr", {},
    el("td", {}, i.instance_id), el("td", {}, `${i.host}:${i.port}`),
    el("td", { class: i.status === "UP" ? "ok" : "warn" }, i.status), el("td", {}, i.zone), el("td", {}, i.version || "-"),
    el("td", { class: "num" }, i.weight), el("td", { class: "num" }, age(i.lease_age_s)),
    el("td", {}, i.registered_by || "-"))));
  fill($("vip-endpoints").tBodies[0], d.endpoints.map((e) => el("tr", {},
    el("td", {}, `${e.host}:${e.port}`), el("td", {}, e.zone), el("td", { class: "num" }, e.weight),
    el("td", {}, e.instance_id), el("td", {}, e.version || "-"))));
  $("vip-skipped").textContent = d.skipped.length
    ? "Not pushed: " + d.skipped.map((s) => `${s.instance_id} (${s.reason})`).join(", ") : "";
  $("vip-policy").textContent = d.policy ? JSON.stringify(d.effective_policy || d.policy, null, 2)
    : d.effective_policy ? "(mesh-wide policy only)\n" + JSON.stringify(d.effective_policy, null, 2) : "no policy";
}

function renderProxies(data) {
  const rows = data.sessions.map((s) => {
    if (s.error) return el("tr", {}, el("td", {}, "?"), el("td", {}, s.xds_server), el("td", { class: "error", colspan: "4" }, s.error));
    const nacks = s.types.filter((t) => t.last_nack);
    return el("tr", { "data-node": s.node_id || "" },
      el("td", {}, s.node_id || "(no node)"), el("td", {}, s.xds_server), el("td", {}, s.stream), el("td", {}, s.client_kind),
      el("td", {}, ...s.types.map((t) => el("span", { class: "sync " + t.status, title: t.type_url },
        `${t.type} ${t.status} (${age(t.last_ack_age_s)})`))),
      el("td", { class: nacks.length ? "error" : "muted" },
        nacks.length ? nacks.map((t) => `${t.type} ${age(t.last_nack_age_s)} ago: ${t.last_nack}`).join("; ") : "-"));
  });
  fill($("proxies-table").tBodies[0], rows);
  $("proxies-empty").hidden = rows.length > 0 || !data.sampled;
}

function details(stats) {
  if (!stats) return "";
  return Object.entries(stats).filter(([, v]) => v === null || typeof v !== "object").map(([k, v]) => `${k}=${v}`).join(" ");
}

function renderHealth(data) {
  $("health-summary").textContent = `${data.actors.length} actors, ${data.restarts} restarts` +
    (data.not_alive.length ? `; not alive: ${data.not_alive.join(", ")}` : "; all alive");
  fill($("health-table").tBodies[0], data.actors.map((a) => el("tr", {},
    el("td", {}, a.name), el("td", {}, a.kind), el("td", { class: a.state === "ALIVE" ? "ok" : "bad" }, a.state),
    el("td", { class: "num" }, a.restarts), el("td", { class: "muted" }, details(a.stats)))));
}

// ---- plots: any line rows {title, series: [{name, points: [[t, v]]}]} and histogram rows {title, bars} ----------

function frame(title) {
  const box = el("div", { class: "plot" }, el("h4", {}, title));
  const s = svg("svg", { viewBox: "0 0 400 160", preserveAspectRatio: "none", role: "img", "aria-label": title });
  box.append(s);
  return [box, s];
}

function lineChart(plot) {
  const [box, s] = frame(plot.title);
  const W = 400, H = 160, L = 34, B = 18, T = 6;
  const all = plot.series.flatMap((x) => x.points);
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
  if (all.length) {
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const vmax = Math.max(1, ...all.map((p) => p[1]));
    const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - L - 4);
    const y = (v) => H - B - (v / vmax) * (H - B - T);
    s.append(svg("text", { x: 2, y: T + 8 }), svg("text", { x: 2, y: H - B }));
    s.children[1].textContent = String(+vmax.toFixed(2));
    s.children[2].textContent = "0";
    const span = svg("text", { x: W - 4, y: H - 4, "text-anchor": "end" });
    span.textContent = `last ${Math.round(t1 - t0)} s`;
    s.append(span);
    plot.series.forEach((series, i) => {
      const pts = series.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      s.append(svg("polyline", { points: pts, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5,
                                 "vector-effect": "non-scaling-stroke", "data-series": series.name }));
    });
  }
  box.append(el("div", { class: "legend" }, plot.series.map((x) => x.name).join(" · ")));
  return box;
}

function barChart(hist) {
  const [box, s] = frame(hist.title + (hist.unit ? ` (${hist.unit})` : ""));
  const W = 400, H = 160, B = 28, T = 12;
  const bars = hist.bars;
  s.append(svg("line", { class: "axis", x1: 0, y1: H - B, x2: W, y2: H - B }));
  const vmax = Math.max(1, ...bars.map((b) => b.count));
  const w = bars.length ? W / bars.length : W;
  bars.forEach((b, i) => {
    const h = (b.count / vmax) * (H - B - T);
    s.append(svg("rect", { x: i * w + w * 0.15, y: H - B - h, width: w * 0.7, height: Math.max(h, 0.5),
                           fill: COLORS[i % COLORS.length], "data-label": b.label }));
    const label = svg("text", { x: i * w + w / 2, y: H - B + 12, "text-anchor": "middle" });
    label.textContent = b.label;
    const value = svg("text", { x: i * w + w / 2, y: Math.max(T, H - B - h - 2), "text-anchor": "middle" });
    value.textContent = String(+b.count.toFixed(2));
    s.append(label, value);
  });
  if (!bars.length) {
    const none = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    none.textContent = "no data yet";
    s.append(none);
  }
  return box;
}

function renderPlots(data) {
  $("plots").replaceChildren(...data.lines.map(lineChart), ...data.histograms.map(barChart));
}

function renderEvents(data) {
  const list = $("events-list");
  for (const e of data.events.slice().reverse()) {
    if (e.seq <= eventsSeq) continue;
    const when = new Date(e.at * 1000).toLocaleTimeString();
    list.prepend(el("li", { "data-kind": e.kind }, el("time", {}, when), el("span", { class: "kind" }, e.kind),
      e.vip ? el("a", { href: "#/vip/" + encodeURIComponent(e.vip) }, e.vip) : "", e.vip ? " " : "", e.detail));
  }
  eventsSeq = Math.max(eventsSeq, data.seq);
  while (list.children.length > 500) list.lastChild.remove();
}

async function refresh() {
  const { name, arg } = route();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== "view-" + name; });
  try {
    if (name === "overview") renderOverview(await api("/api/overview"));
    else if (name === "vip") renderVip(await api("/api/vips/" + encodeURIComponent(arg)));
    else if (name === "proxies") renderProxies(await api("/api/proxies"));
    else if (name === "health") {
      const [health, plots] = await Promise.all([api("/api/health"), api("/api/plots")]);
      renderHealth(health);
      renderPlots(plots);
    } else if (name === "events") renderEvents(await api(`/api/events?since=${eventsSeq}&limit=500`));
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (err) {
    if (err instanceof Unauthorized) { showSignIn("Your session ended: sign in again."); return; }
    setLive(false, String(err.message || err));
  }
}

function stopPolling() { if (timer) clearInterval(timer); timer = null; }

function startPolling() {
  $("signin").hidden = true;
  stopPolling();
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

async function main() {
  window.addEventListener("hashchange", () => { if (timer) refresh(); });
  $("filter").addEventListener("input", () => refresh());
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await signIn($("token-input").value.trim());
      $("token-input").value = "";
      startPolling();
    } catch (err) {
      $("signin-error").textContent = err instanceof Unauthorized ? "That token is not valid." : String(err.message || err);
    }
  });
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.hash);  // the token leaves the address bar
    try { await signIn(token); } catch (err) { showSignIn("The token in the link is not valid."); return; }
  }
  try {
    const who = await api("/api/whoami");
    $("who").textContent = who.principal;
    startPolling();
  } catch (err) {
    showSignIn(err instanceof Unauthorized ? "" : String(err.message || err));
  }
}

main();
