// The shardcast dashboard: reads the admin stream at /api/v1/dashboard/ws.
// The admin key lives in this tab's session storage and travels only in the
// X-API-Key header of the ticket request; the stream opens with the
// one-time ticket.
"use strict";

const KEY = "shardcast.adminKey";
const HISTORY = 120; // samples kept for the charts (about two minutes)
const TAIL_KEEP = 200; // events kept in the tail
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  retry: null,
  heartbeat: null,
  series: { published: [], sent: [], dropped: [], p50: [], p99: [], p999: [] },
  tail: null,
};

function fmt(n, digits = 0) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n.toFixed(digits);
}

function ms(n) {
  if (n === null || n === undefined) return "–";
  return n < 10 ? n.toFixed(2) : n.toFixed(1);
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (seconds % 60) + "s";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(tbody, rows, build) {
  tbody.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    build(tr, r);
    return tr;
  }));
}

function setStatus(text, cls) {
  const status = $("status");
  status.textContent = text;
  status.className = "badge" + (cls ? " " + cls : "");
}

// ---- connecting ----------------------------------------------------------

function showLogin(message) {
  $("login").hidden = false;
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login-error").textContent = message || "";
  setStatus("offline");
}

async function connect() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return showLogin();
  clearTimeout(state.retry);
  let ticket;
  try {
    const resp = await fetch("/api/v1/dashboard/ticket", {
      method: "POST",
      headers: { "X-API-Key": key },
    });
    if (resp.status === 401 || resp.status === 403) {
      sessionStorage.removeItem(KEY);
      const body = await resp.json().catch(() => ({}));
      return showLogin("Key refused: " + ((body.error && body.error.message) || resp.status));
    }
    if (!resp.ok) throw new Error("ticket: HTTP " + resp.status);
    ticket = (await resp.json()).ticket;
  } catch (e) {
    setStatus("unreachable");
    state.retry = setTimeout(connect, 2000);
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/v1/dashboard/ws?token=${encodeURIComponent(ticket)}`);
  state.ws = ws;
  ws.onopen = () => {
    setStatus("live", "live");
    if (state.tail) send({ action: "tail", channel: state.tail });
  };
  ws.onmessage = (ev) => onFrame(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    clearInterval(state.heartbeat);
    if (state.ws !== ws) return;
    state.ws = null;
    if (ev.code === 4401 || ev.code === 4403) return showLogin("Stream refused: " + ev.reason);
    setStatus(ev.code === 1001 ? "server going away, reconnecting" : "reconnecting");
    state.retry = setTimeout(connect, 2000);
  };
}

function send(command) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(command));
}

// ---- frames --------------------------------------------------------------

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      // A third of the server's timeout, so a late beat or two is harmless.
      clearInterval(state.heartbeat);
      const every = Math.max(1000, (frame.heartbeatTimeoutSeconds * 1000) / 3);
      state.heartbeat = setInterval(() => send({ action: "heartbeat" }), every);
      $("version").textContent = "v" + frame.version + " · " + frame.shards + " shard" + (frame.shards === 1 ? "" : "s");
      break;
    case "stats":
      onStats(frame);
      break;
    case "tail":
      $("tail-status").textContent = frame.channel ? "showing " + frame.channel : "stopped";
      break;
    case "event":
      onEvent(frame);
      break;
    case "error":
      $("tail-status").textContent = frame.message;
      break;
  }
}

function push(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

function onStats(s) {
  const dropRate = Object.values(s.rates.dropped).reduce((a, b) => a + b, 0);
  $("connections").textContent = fmt(s.connections.total);
  $("publish-rate").textContent = fmt(s.rates.published, 1);
  $("send-rate").textContent = fmt(s.rates.sent, 1);
  $("drop-rate").textContent = fmt(dropRate, 1);
  $("latency").textContent = `${ms(s.latency.p50)} / ${ms(s.latency.p99)} / ${ms(s.latency.p999)} ms`;
  $("uptime").textContent = "up " + duration(s.uptimeSeconds);
  if (s.draining) setStatus("draining", "draining");

  const series = state.series;
  push(series.published, s.rates.published);
  push(series.sent, s.rates.sent);
  push(series.dropped, dropRate);
  push(series.p50, s.latency.p50);
  push(series.p99, s.latency.p99);
  push(series.p999, s.latency.p999);
  lineChart($("throughput-chart"), [series.published, series.sent, series.dropped]);
  lineChart($("latency-chart"), [series.p50, series.p99, series.p999]);
  barChart($("latency-bars"), s.latency.bars);

  fill($("protocols"), Object.entries(s.connections.byProtocol), (tr, [name, n]) => {
    cell(tr, name);
    cell(tr, fmt(n), "num");
  });
  fill($("shards"), s.connections.byShard.map((n, i) => [i, n]), (tr, [i, n]) => {
    cell(tr, "shard " + i);
    cell(tr, fmt(n), "num");
  });
  const drops = Object.entries(s.rates.dropped).filter(([, r]) => r > 0);
  fill($("drops"), drops.length ? drops : [["none", 0]], (tr, [reason, r]) => {
    cell(tr, reason);
    cell(tr, fmt(r, 1), "num");
  });

  $("channel-count").textContent = `(${s.channels.length} of ${s.channelCount})`;
  fill($("channels"), s.channels, (tr, c) => {
    cell(tr, c.name);
    cell(tr, fmt(c.subscribers), "num");
    cell(tr, fmt(c.publishRate, 1), "num");
    cell(tr, fmt(c.sendRate, 1), "num");
    cell(tr, fmt(c.dropRate, 1), "num");
    cell(tr, fmt(c.historySize), "num");
    cell(tr, fmt(c.historyBytes), "num");
    const button = document.createElement("button");
    button.textContent = "Tail";
    button.dataset.channel = c.name;
    button.onclick = () => startTail(c.name);
    cell(tr, "").appendChild(button);
  });
  $("channel-names").replaceChildren(...s.channels.map((c) => {
    const option = document.createElement("option");
    option.value = c.name;
    return option;
  }));

  $("slowest-empty").hidden = s.slowest.length > 0;
  fill($("slowest"), s.slowest, (tr, c) => {
    cell(tr, c.clientId);
    cell(tr, c.owner);
    cell(tr, c.protocol);
    cell(tr, c.shard, "num");
    cell(tr, fmt(c.queueDepth), "num");
    cell(tr, fmt(c.dropped), "num");
    cell(tr, fmt(c.conflated), "num");
    const button = document.createElement("button");
    button.textContent = "Disconnect";
    button.className = "danger";
    button.dataset.client = c.clientId;
    button.onclick = () => disconnect(c);
    cell(tr, "").appendChild(button);
  });
}

function onEvent(e) {
  const li = document.createElement("li");
  const seq = document.createElement("span");
  seq.className = "seq";
  seq.textContent = "#" + e.seq;
  li.appendChild(seq);
  if (e.skipped) {
    const gap = document.createElement("span");
    gap.className = "gap";
    gap.textContent = `(${e.skipped} skipped)`;
    li.appendChild(gap);
  }
  const data = JSON.stringify(e.data);
  li.appendChild(document.createTextNode((e.key ? e.key + " " : "") + (data.length > 400 ? data.slice(0, 400) + "…" : data)));
  const list = $("tail");
  list.prepend(li);
  while (list.children.length > TAIL_KEEP) list.lastChild.remove();
}

// ---- actions -------------------------------------------------------------

function startTail(channel) {
  state.tail = channel;
  $("tail-channel").value = channel;
  $("tail").replaceChildren();
  send({ action: "tail", channel });
}

async function disconnect(client) {
  const key = sessionStorage.getItem(KEY);
  const path = "/api/v1/websocket/clients/" + encodeURIComponent(client.clientId) +
    "?owner=" + encodeURIComponent(client.owner) + "&reason=" + encodeURIComponent("disconnected from the dashboard");
  const resp = await fetch(path, { method: "DELETE", headers: { "X-API-Key": key } });
  const body = await resp.json().catch(() => ({}));
  $("action-result").textContent = resp.ok
    ? `Disconnected ${client.clientId} (${body.connections} connection${body.connections === 1 ? "" : "s"}).`
    : `Could not disconnect ${client.clientId}: ${(body.error && body.error.message) || resp.status}`;
}

// ---- charts --------------------------------------------------------------

const COLORS = ["#4fb3ff", "#ffb454", "#f07178"];

function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== width * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

function lineChart(canvas, lines) {
  const { ctx, width, height } = prepare(canvas);
  const values = lines.flat().filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...values) * 1.1;
  const left = 48, bottom = height - 16;
  ctx.strokeStyle = "#26313d";
  ctx.fillStyle = "#7d8a98";
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - 8) * i / 4;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width, y);
    ctx.stroke();
    ctx.fillText(fmt(max * i / 4, max < 10 ? 2 : 0), 2, y + 4);
  }
  lines.forEach((series, n) => {
    ctx.strokeStyle = COLORS[n];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    series.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = left + (width - left) * (i + HISTORY - series.length) / (HISTORY - 1);
      const y = bottom - (bottom - 8) * v / max;
      if (started) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      started = true;
    });
    ctx.stroke();
  });
}

function barChart(canvas, bars) {
  const { ctx, width, height } = prepare(canvas);
  const max = Math.max(1, ...bars.map((b) => b.count));
  const bottom = height - 16;
  const w = width / bars.length;
  bars.forEach((b, i) => {
    const h = (bottom - 8) * b.count / max;
    ctx.fillStyle = "#4fb3ff";
    ctx.fillRect(i * w + 2, bottom - h, w - 4, h);
    ctx.fillStyle = "#7d8a98";
    const label = b.le === null ? ">1s" : b.le >= 1000 ? b.le / 1000 + "s" : b.le < 1 ? b.le * 1000 + "µs" : b.le + "ms";
    if (w >= 34 || i % 2 === 0) ctx.fillText(label, i * w + 2, height - 3);
  });
}

// ---- wiring --------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    connect();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    if (state.ws) state.ws.close();
    state.ws = null;
    showLogin();
  });
  $("tail-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    startTail($("tail-channel").value.trim());
  });
  $("untail").addEventListener("click", () => {
    state.tail = null;
    send({ action: "untail" });
  });
  connect();
});
