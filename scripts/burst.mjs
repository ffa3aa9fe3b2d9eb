// Batches on one channel against a running server: SUBS telemetry clients
// subscribe to one channel, then BATCHES HTTP batch publishes of BATCH
// messages each go to it, one after the other. Prints what each subscriber
// received and the server's sent and dropped totals: with nothing lost,
// every subscriber has BATCHES x BATCH events and dropped is 0.
//
//   node --experimental-websocket scripts/burst.mjs [port] [api key]
//
// (Node 22 and newer need no flag.) Defaults: port 8080, the development
// key a server on loopback starts with (dev-api-key). SUBS, BATCHES and
// BATCH come from the environment (4, 5, 1000). For example:
//
//   target/release/shardcast --listen 127.0.0.1:18090 --no-demo --shards 1 \
//     --rate-limit 0 --channel 'burst.*' &
//   node --experimental-websocket scripts/burst.mjs 18090
const port = process.argv[2] ?? '8080';
const key = process.argv[3] ?? 'dev-api-key';
const subs = Number(process.env.SUBS ?? 4);
const batches = Number(process.env.BATCHES ?? 5);
const batch = Number(process.env.BATCH ?? 1000);
const channel = 'burst.t1';
const base = `127.0.0.1:${port}`;

const received = new Array(subs).fill(0);
const clients = await Promise.all(
  [...Array(subs)].map(
    (_, i) =>
      new Promise((subscribed, failed) => {
        const ws = new WebSocket(`ws://${base}/ws/telemetry?apiKey=${key}&channels=${channel}`);
        ws.onerror = () => failed(new Error(`subscriber ${i} could not connect`));
        ws.onmessage = (frame) => {
          const message = JSON.parse(frame.data);
          if (message.type === 'ack') subscribed(ws);
          if (message.type === 'event') received[i] += 1;
        };
      }),
  ),
);

const headers = { 'content-type': 'application/json', 'x-api-key': key };
for (let b = 0; b < batches; b += 1) {
  const messages = [...Array(batch)].map((_, n) => ({ channel, data: { n } }));
  const answer = await fetch(`http://${base}/api/v1/publish`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ messages }),
  });
  if (answer.status !== 200) throw new Error(`publish: ${answer.status} ${await answer.text()}`);
}

// Wait until nothing more arrives for half a second.
let total = -1;
while (total !== received.reduce((a, b) => a + b, 0)) {
  total = received.reduce((a, b) => a + b, 0);
  await new Promise((resolve) => setTimeout(resolve, 500));
}
const stats = await (await fetch(`http://${base}/api/v1/websocket/stats`, { headers })).json();
console.log(
  JSON.stringify({
    published: batches * batch,
    received_per_subscriber: received,
    server_sent: stats.messagesSent,
    server_dropped: stats.messagesDropped,
  }),
);
clients.forEach((ws) => ws.close());
process.exit(0);
