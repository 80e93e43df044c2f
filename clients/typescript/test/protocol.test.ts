// The client's own behaviour against a scripted loopback server: seq gaps, reconnect with
// backoff (and its resumption hook), request timeouts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocketServer, type WebSocket } from "ws";
import { SwitchboardClient } from "../src/index.js";

/** A server that completes the handshake, then hands each socket to `script`. */
async function server(script: (ws: WebSocket, n: number) => void): Promise<{ url: string; close: () => void }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  let n = 0;
  wss.on("connection", (ws) => {
    const mine = ++n;
    ws.send(JSON.stringify({ type: "event", event: "connect.challenge", payload: { nonce: "n1", ts: 1 } }));
    ws.on("message", (data) => {
      const req = JSON.parse(data.toString());
      if (req.method === "connect") {
        ws.send(JSON.stringify({ type: "res", id: req.id, ok: true, payload: { type: "hello-ok", protocol: 4 } }));
        script(ws, mine);
      }
    });
  });
  const addr = wss.address();
  if (typeof addr !== "object" || addr === null) throw new Error("no address");
  return { url: `ws://127.0.0.1:${addr.port}`, close: () => wss.close() };
}

const event = (seq: number) => JSON.stringify({ type: "event", event: "tick", payload: { ts: seq }, seq });

test("a skipped seq is reported as a gap", async () => {
  const s = await server((ws) => [1, 2, 4, 5].forEach((q) => ws.send(event(q))));
  const gaps: { expected: number; received: number }[] = [];
  let ticks = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const c = new SwitchboardClient({ url: s.url, token: "t", reconnect: false, onGap: (g) => gaps.push(g) });
  c.on("tick", () => { if (++ticks === 4) done(); });
  await c.connect();
  await all;
  assert.deepEqual(gaps, [{ expected: 3, received: 4 }]);
  c.close();
  s.close();
});

test("an unexpected close reconnects with backoff and calls the resumption hook", async () => {
  const s = await server((ws, n) => {
    ws.send(event(1));
    ws.send(event(2));
    if (n === 1) setImmediate(() => ws.close(1012, "restart"));
  });
  let resolveHook!: (v: { lastSeq: number | undefined }) => void;
  const hook = new Promise<{ lastSeq: number | undefined }>((r) => (resolveHook = r));
  const closes: number[] = [];
  const c = new SwitchboardClient({
    url: s.url, token: "t", reconnect: { initialMs: 10, maxMs: 50 },
    onClose: (code) => closes.push(code),
    onReconnect: ({ lastSeq }) => resolveHook({ lastSeq }),
  });
  await c.connect();
  const { lastSeq } = await hook;
  assert.equal(lastSeq, 2, "the hook learns the last seq seen before the drop");
  assert.deepEqual(closes, [1012]);
  c.close();
  s.close();
});

test("a request without an answer times out", async () => {
  const s = await server(() => {});
  const c = new SwitchboardClient({ url: s.url, token: "t", reconnect: false });
  await c.connect();
  await assert.rejects(c.request("status", {}, { timeoutMs: 50 }), /timed out after 50 ms/);
  c.close();
  s.close();
});
