// Runs against a real gateway: tests/e2e/ts_client.rs starts `switchboard` (and a Telegram
// stand-in) and runs this file with SWITCHBOARD_URL, SWITCHBOARD_TOKEN and SWITCHBOARD_SEND_TO.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwitchboardClient, GatewayError, createDeviceIdentity, type AgentEvent } from "../src/index.js";

const url = process.env.SWITCHBOARD_URL;
const token = process.env.SWITCHBOARD_TOKEN;
const sendTo = process.env.SWITCHBOARD_SEND_TO;
if (!url || !token || !sendTo) throw new Error("SWITCHBOARD_URL, SWITCHBOARD_TOKEN and SWITCHBOARD_SEND_TO are required");

async function connected(): Promise<SwitchboardClient> {
  const c = new SwitchboardClient({ url: url!, token, reconnect: false });
  await c.connect();
  return c;
}

test("health and status", async () => {
  const c = await connected();
  try {
    assert.equal(c.hello?.type, "hello-ok");
    assert.equal(c.hello?.protocol, 4);
    const health = await c.request("health", {});
    assert.ok(Array.isArray(health.agents) && health.agents.length > 0, JSON.stringify(health));
    const status = await c.request("status", {});
    assert.ok(Array.isArray(status.channelSummary) && typeof status.sessions === "object", JSON.stringify(status));
  } finally {
    c.close();
  }
});

test("an agent run streams its events to its final answer", async () => {
  const c = await connected();
  try {
    const events: AgentEvent[] = [];
    const key = `ts-run-${process.pid}`;
    const final = await c.runAgent({ message: "one two three", idempotencyKey: key }, (e) => events.push(e));
    assert.equal(final.status, "ok", JSON.stringify(final));
    assert.equal(final.result?.payloads?.[0]?.text, "[echo] one two three");
    assert.ok(events.length > 0, "the run streamed agent events");
    assert.ok(events.every((e) => e.runId === key));
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "per-run seq grows");
  } finally {
    c.close();
  }
});

test("send goes out through the channel", async () => {
  const c = await connected();
  try {
    const r = await c.request("send", { to: sendTo!, message: "hello from the TypeScript client", idempotencyKey: `ts-send-${process.pid}` });
    assert.equal(r.channel, "telegram");
    assert.equal(r.chatId, sendTo);
    assert.ok(r.messageId, JSON.stringify(r));
  } finally {
    c.close();
  }
});

test("a wrong token is refused", async () => {
  const c = new SwitchboardClient({ url: url!, token: "not-the-token", reconnect: false });
  await assert.rejects(c.connect(), (e: unknown) => {
    assert.ok(e instanceof GatewayError, String(e));
    assert.match(e.message, /unauthorized/i);
    return true;
  });
  c.close();
});

test("a device identity signs the challenge", async () => {
  const device = createDeviceIdentity();
  const c = new SwitchboardClient({ url: url!, token, device, reconnect: false });
  try {
    const hello = await c.connect();
    assert.equal(hello.type, "hello-ok");
    assert.ok(hello.auth?.role, JSON.stringify(hello.auth));
  } finally {
    c.close();
  }
  // A signature by another key for the same device id is refused.
  const other = createDeviceIdentity();
  const forged = new SwitchboardClient({ url: url!, token, device: { ...device, privateKey: other.privateKey }, reconnect: false });
  await assert.rejects(forged.connect(), GatewayError);
  forged.close();
});
