// A typed client of the Switchboard gateway (protocol v4) on the generated models.
import { createHash, generateKeyPairSync, sign as edSign, type KeyObject } from "node:crypto";
import WebSocket from "ws";
import type {
  AgentEvent,
  AgentParams,
  ConnectParamsV4,
  ConnectParamsV4Client,
  EventFrame,
  HealthParams,
  HealthResult,
  HelloOkV4,
  ResponseFrame,
  SendParams,
  SendResult,
  StatusParams,
  StatusResult,
} from "./models.js";

/** An ed25519 device identity: the gateway pairs devices by `id` (sha256 of the raw key). */
export interface DeviceIdentity {
  id: string;
  /** The raw 32-byte public key, base64url. */
  publicKey: string;
  privateKey: KeyObject;
}

/** A fresh device identity. Keep `privateKey` to stay the same (paired) device. */
export function createDeviceIdentity(): DeviceIdentity {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  const raw = spki.subarray(spki.length - 32);
  return {
    id: createHash("sha256").update(raw).digest("hex"),
    publicKey: raw.toString("base64url"),
    privateKey,
  };
}

/**
 * The text a v4 device signs (payload layout `v3`):
 * `v3|deviceId|clientId|clientMode|role|scopes,…|signedAtMs|token|nonce|platform|deviceFamily`,
 * platform and family trimmed and lowercased.
 */
export function devicePayload(f: {
  deviceId: string; clientId: string; clientMode: string; role: string; scopes: string[];
  signedAtMs: number; token: string; nonce: string; platform: string; deviceFamily: string;
}): string {
  return [
    "v3", f.deviceId, f.clientId, f.clientMode, f.role, f.scopes.join(","), String(f.signedAtMs),
    f.token, f.nonce, f.platform.trim().toLowerCase(), f.deviceFamily.trim().toLowerCase(),
  ].join("|");
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export interface ClientOptions {
  url: string;
  /** The shared token (or `password`); with a `device`, the token is part of the signed text. */
  token?: string;
  password?: string;
  device?: DeviceIdentity;
  client?: Partial<ConnectParamsV4Client>;
  role?: string;
  scopes?: string[];
  /** How long a request waits for its response (default 15 s). */
  requestTimeoutMs?: number;
  /** Reconnect after an unexpected close (default on); `false` turns it off. */
  reconnect?: Partial<Backoff> | false;
  /**
   * Called after every reconnect, before requests flow again. The hook for resumption:
   * once the gateway's resume extension exists, replay from `lastSeq` here.
   */
  onReconnect?: (ctx: { hello: HelloOkV4; lastSeq: number | undefined }) => void | Promise<void>;
  /** A `seq` was skipped: events between `expected` and `received` were lost. */
  onGap?: (gap: { expected: number; received: number }) => void;
  /** Every close of the socket (code, reason), planned or not. */
  onClose?: (code: number, reason: string) => void;
}

/** A refusal or error response from the gateway. */
export class GatewayError extends Error {
  constructor(readonly code: string, message: string, readonly details?: unknown) {
    super(`${code}: ${message}`);
    this.name = "GatewayError";
  }
}

/** The typed methods: params and result from the generated models. */
export interface Methods {
  health: { params: HealthParams; result: HealthResult };
  status: { params: StatusParams; result: StatusResult };
  send: { params: SendParams; result: SendResult };
  agent: { params: AgentParams; result: AgentRunResult };
}

/** `agent`'s answers: first `accepted`, then the final one (`ok` or `error`). */
export interface AgentRunResult {
  runId: string;
  status: "accepted" | "ok" | "error" | string;
  summary?: string;
  result?: { payloads?: { text?: string }[] } & Record<string, unknown>;
  [key: string]: unknown;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  expectFinal: boolean;
  timeoutMs: number;
}

type Handler = (payload: unknown, frame: EventFrame) => void;

export class SwitchboardClient {
  private ws: WebSocket | undefined;
  private nextId = 0;
  private pending = new Map<string, Pending>();
  private handlers = new Map<string, Set<Handler>>();
  private lastSeq: number | undefined;
  private closedByUs = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** The last `hello-ok` (after connect or a reconnect). */
  hello: HelloOkV4 | undefined;

  constructor(private readonly opts: ClientOptions) {}

  /** Connects and completes the handshake; rejects with a GatewayError when refused. */
  async connect(): Promise<HelloOkV4> {
    this.closedByUs = false;
    const hello = await this.open();
    this.attempt = 0;
    return hello;
  }

  /** Subscribes to one event (or `"*"` for all); returns the unsubscribe function. */
  on(event: "agent", handler: (payload: AgentEvent, frame: EventFrame) => void): () => void;
  on(event: string, handler: Handler): () => void;
  on(event: string, handler: (payload: never, frame: EventFrame) => void): () => void {
    const h = handler as Handler;
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(h);
    return () => set.delete(h);
  }

  /** A typed request; `expectFinal` waits past an `accepted` answer to the final one. */
  request<M extends keyof Methods>(
    method: M,
    params: Methods[M]["params"],
    opts?: { timeoutMs?: number; expectFinal?: boolean },
  ): Promise<Methods[M]["result"]>;
  request(method: string, params?: unknown, opts?: { timeoutMs?: number; expectFinal?: boolean }): Promise<unknown>;
  request(method: string, params: unknown = {}, opts: { timeoutMs?: number; expectFinal?: boolean } = {}): Promise<unknown> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.hello) {
      return Promise.reject(new Error("not connected"));
    }
    return this.send(ws, method, params, opts.timeoutMs ?? this.opts.requestTimeoutMs ?? 15_000, opts.expectFinal ?? false);
  }

  /** An agent run to its final answer; `onEvent` sees the run's streamed events. */
  async runAgent(params: AgentParams, onEvent?: (e: AgentEvent) => void, timeoutMs = 120_000): Promise<AgentRunResult> {
    const off = onEvent ? this.on("agent", (e) => { if (e.runId === params.idempotencyKey) onEvent(e); }) : undefined;
    try {
      return await this.request("agent", params, { timeoutMs, expectFinal: true });
    } finally {
      off?.();
    }
  }

  /** Closes for good (no reconnect); pending requests are rejected. */
  close(): void {
    this.closedByUs = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.ws?.close(1000, "client closed");
    this.failPending(new Error("client closed"));
  }

  private send(ws: WebSocket, method: string, params: unknown, timeoutMs: number, expectFinal: boolean): Promise<unknown> {
    const id = `ts-${++this.nextId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, expectFinal, timeoutMs });
      ws.send(JSON.stringify({ type: "req", id, method, params }), (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  private open(): Promise<HelloOkV4> {
    const o = this.opts;
    const ws = new WebSocket(o.url, { maxPayload: 32 * 1024 * 1024 });
    this.ws = ws;
    return new Promise<HelloOkV4>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error) => {
        if (!settled) {
          settled = true;
          reject(e);
        }
      };
      ws.on("error", (e) => fail(e));
      ws.on("close", (code, reasonBuf) => {
        const reason = reasonBuf.toString();
        o.onClose?.(code, reason);
        fail(new GatewayError("CLOSED", reason || `closed (${code})`));
        if (this.ws === ws) this.onSocketClosed();
      });
      ws.on("message", (data) => {
        let frame: { type?: string; [k: string]: unknown };
        try {
          frame = JSON.parse(data.toString());
        } catch {
          return;
        }
        if (frame.type === "event" && frame.event === "connect.challenge" && !settled) {
          const nonce = String((frame.payload as { nonce?: unknown } | undefined)?.nonce ?? "");
          this.send(ws, "connect", this.connectParams(nonce), o.requestTimeoutMs ?? 15_000, false).then(
            (payload) => {
              settled = true;
              this.hello = payload as HelloOkV4;
              resolve(this.hello);
            },
            (e: Error) => {
              fail(e);
              ws.close();
            },
          );
        } else if (frame.type === "res") {
          this.onResponse(frame as unknown as ResponseFrame);
        } else if (frame.type === "event") {
          this.onEvent(frame as unknown as EventFrame);
        }
      });
    });
  }

  private connectParams(nonce: string): ConnectParamsV4 {
    const o = this.opts;
    const client: ConnectParamsV4Client = {
      id: "gateway-client",
      mode: "backend",
      version: "0.1.0",
      platform: process.platform,
      ...o.client,
    };
    const role = o.role ?? "operator";
    const scopes = o.scopes ?? ["operator.read", "operator.write"];
    const params: ConnectParamsV4 = { minProtocol: 4, maxProtocol: 4, client, role, scopes };
    if (o.token !== undefined) params.auth = { token: o.token };
    else if (o.password !== undefined) params.auth = { password: o.password };
    if (o.device) {
      const signedAt = Date.now();
      const text = devicePayload({
        deviceId: o.device.id, clientId: client.id, clientMode: client.mode, role, scopes,
        signedAtMs: signedAt, token: o.token ?? "", nonce, platform: client.platform,
        deviceFamily: client.deviceFamily ?? "",
      });
      const signature = edSign(null, Buffer.from(text), o.device.privateKey).toString("base64url");
      params.device = { id: o.device.id, publicKey: o.device.publicKey, signature, signedAt, nonce };
    }
    return params;
  }

  private onResponse(res: ResponseFrame): void {
    const p = this.pending.get(res.id);
    if (!p) return;
    const payload = res.payload as { status?: unknown } | undefined;
    if (res.ok && p.expectFinal && payload?.status === "accepted") {
      // The run is under way: its final answer comes with the same id; wait afresh for it.
      clearTimeout(p.timer);
      p.timer = setTimeout(() => {
        this.pending.delete(res.id);
        p.reject(new Error(`no final answer within ${p.timeoutMs} ms`));
      }, p.timeoutMs);
      return;
    }
    clearTimeout(p.timer);
    this.pending.delete(res.id);
    if (res.ok) p.resolve(res.payload);
    else p.reject(new GatewayError(res.error?.code ?? "UNKNOWN", res.error?.message ?? "error", res.error?.details));
  }

  private onEvent(frame: EventFrame): void {
    if (typeof frame.seq === "number") {
      if (this.lastSeq !== undefined && frame.seq !== this.lastSeq + 1) {
        this.opts.onGap?.({ expected: this.lastSeq + 1, received: frame.seq });
      }
      this.lastSeq = frame.seq;
    }
    for (const key of [frame.event, "*"]) {
      for (const h of this.handlers.get(key) ?? []) h(frame.payload, frame);
    }
  }

  private failPending(e: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }

  private onSocketClosed(): void {
    const wasConnected = this.hello !== undefined;
    this.failPending(new Error("connection closed"));
    if (this.closedByUs || this.opts.reconnect === false || !wasConnected) return;
    const b: Backoff = { initialMs: 250, maxMs: 15_000, factor: 2, ...(this.opts.reconnect ?? {}) };
    const delay = Math.min(b.maxMs, b.initialMs * b.factor ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      // A fresh connection numbers its events from 1 again (until resume exists).
      const seqBefore = this.lastSeq;
      this.lastSeq = undefined;
      this.open().then(
        async (hello) => {
          this.attempt = 0;
          await this.opts.onReconnect?.({ hello, lastSeq: seqBefore });
        },
        () => {
          // open() failed: its close handler schedules the next attempt.
        },
      );
    }, delay);
  }
}
