// A uWebSockets.js fan-out server that speaks the subset of shardcast's
// protocol the load generator uses, so that both can be measured with the
// same client (scripts/compare.sh):
//   GET /ws/telemetry?channels=a,b    subscribe on connect: a welcome, then an ack
//   GET /ws/publish                   {"action":"publish","channel":…,"data":…}
//   GET /api/v1/websocket/stats       connections and, per channel, published
// Each published message gets its channel's next seq and is sent to every
// subscriber as {"type":"event","channel":…,"seq":…,"data":…}, built once per
// message (uWS's app.publish shares it). Compression off; maxBackpressure
// 1 MiB, beyond which uWS skips a slow subscriber's messages (the load
// generator sees the gap in seq).
//
//   node server.mjs [port]     (PORT also works; default 18081)
import uWS from "uwebsockets";

const port = Number(process.argv[2] || process.env.PORT || 18081);
const seqs = new Map(); // channel → last seq
let connections = 0;
let clients = 0;

const app = uWS.App();

app.ws("/ws/telemetry", {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    const channels = (req.getQuery("channels") || "").split(",").filter((c) => c.length > 0);
    res.upgrade(
      { channels },
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      context,
    );
  },
  open: (ws) => {
    connections++;
    const { channels } = ws.getUserData();
    ws.send(JSON.stringify({ type: "welcome", clientId: `uws-${++clients}` }));
    for (const channel of channels) ws.subscribe(channel);
    ws.send(JSON.stringify({ type: "ack", action: "subscribe", channels }));
  },
  message: () => {}, // heartbeats and commands: nothing to answer
  close: () => {
    connections--;
  },
});

const PUBLISH = '"channel":"';
const DATA = '"data":';

app.ws("/ws/publish", {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  open: () => {
    connections++;
  },
  message: (ws, message) => {
    // The load generator's frames are {"action":"publish","channel":"…","data":…}:
    // take the channel and the data's text as they are, as shardcast does.
    const text = Buffer.from(message).toString("utf8");
    const at = text.indexOf(PUBLISH);
    const data = text.indexOf(DATA);
    if (at < 0 || data < 0) return;
    const start = at + PUBLISH.length;
    const channel = text.slice(start, text.indexOf('"', start));
    const seq = (seqs.get(channel) || 0) + 1;
    seqs.set(channel, seq);
    const event = `{"type":"event","channel":"${channel}","seq":${seq},"data":${text.slice(data + DATA.length, text.length - 1)}}`;
    app.publish(channel, event, false, false);
  },
  close: () => {
    connections--;
  },
});

app.get("/api/v1/websocket/stats", (res) => {
  const channels = [...seqs].map(([channel, published]) => ({ channel, published }));
  res.writeHeader("Content-Type", "application/json");
  res.end(JSON.stringify({ activeConnections: connections, channels }));
});

app.any("/*", (res) => {
  res.writeStatus("404 Not Found").end();
});

app.listen("127.0.0.1", port, (token) => {
  if (!token) {
    console.error(`uws peer: cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.error(`uws peer listening on 127.0.0.1:${port}`);
});

process.on("SIGTERM", () => process.exit(0));
