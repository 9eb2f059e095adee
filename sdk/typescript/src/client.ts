// The client state machine, the same as pkg/sdk: find a gateway
// (redirect targets, dispatcher, static addresses; failed ones last),
// AUTH, heartbeat, deduplicated delivery with batched ACKs, requests matched
// by Seq, and reconnects with jittered exponential backoff.
import {
  DEFAULT_MAX_LEN,
  FLAG_ACK_REQUIRED,
  MIN_LEN,
  Op,
  encodeAck,
  encodeFrame,
  encodeJSON,
  encodeUpstream,
  parseJSON,
  parsePush,
  toId,
  utf8,
  type Frame,
} from './codec.js';
import { Emitter } from './emitter.js';
import { LcpushError, asLcpushError } from './errors.js';
import { TRANSPORTS, parseAddr, type Conn, type Dialer, type Endpoint, type TlsOptions, type TransportName } from './transport.js';
import { Dedup, backoff, sleep } from './util.js';

export const SDK_NAME = 'lcpush-ts/0.1.0';

export interface ClientOptions {
  /** Dispatcher base URL(s), http(s)://host:port; asked GET {url}/v1/dispatch before each (re)connect. */
  dispatch?: string | string[];
  /** Static gateway addresses, tried after the dispatched ones: host:port, or ws://, wss://, tcp://, tls:// URLs. */
  addrs?: string[];
  /** How bare host:port addresses are dialed and what the dispatcher is asked for. Default "tcp" (Node), "ws" in a browser makes sense. */
  transport?: TransportName;
  app: number;
  uid: string;
  /** A static token: a bad_token answer to it is final. */
  token?: string;
  /** Called before each connect; a bad_token answer makes the client call it again and retry with backoff. */
  tokenProvider?: () => Promise<string> | string;
  device?: string;
  /** Network type (wifi, 4g, ...) for the dispatcher and AUTH; dispatcher answers are cached per net. */
  net?: string;
  /** Requested heartbeat, seconds (default 30); the server's answer is used. */
  hb?: number;
  /** Do not ACK QoS 1 messages automatically; call ack(). */
  manualAck?: boolean;
  /** Reconnect backoff bounds, ms (default 500 and 30000). */
  backoffMin?: number;
  backoffMax?: number;
  /** How many recent message ids are remembered for dedup (default 1024). */
  dedupWindow?: number;
  /** Bounds one attempt: dial, TLS, WebSocket upgrade and AUTH (and one dispatcher call), ms (default 5000). */
  connectTimeout?: number;
  /** A request (bind, unbind, upstream with reply) fails after this, ms (default 10000). */
  requestTimeout?: number;
  /** Largest frame accepted from the server (default 4 MiB: pushes may exceed the inbound 65,548). */
  maxFrame?: number;
  /** TLS options for tls and wss (Node entry). */
  tls?: TlsOptions;
  sdkName?: string;
  /** The transport implementation; set by the entry point. */
  dialer?: Dialer;
  /** fetch for the dispatcher; default globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
}

export type State = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface StateEvent {
  state: State;
  /** Why: an error code ("bad_token", "io", "closed", ...) or, after a KICK, its numeric code. */
  code?: string | number;
  reason?: string;
  /** The gateway address as dialed (connecting, connected, disconnected). */
  addr?: string;
  /** AUTH_OK's room (connected). */
  room?: string;
}

export interface Message {
  app: number;
  id: bigint;
  qos: 0 | 1;
  payload: Uint8Array;
}

export interface ClientEvents {
  state: StateEvent;
  message: Message;
  kicked: { code: number; reason: string };
  redirected: { addrs: string[]; afterMs: number; reason: string };
  error: LcpushError;
}

// Limits that keep every queue bounded (as pkg/sdk).
const ACK_BATCH = 64;
const ACK_DELAY_MS = 10;
const MAX_PENDING_ACKS = 4096; // ids waiting for a connection; the oldest are dropped (the server redelivers)
const MAX_PENDING = 1024; // requests waiting for a reply
const MAX_BINDS = 256;
const MAX_ADDRS = 32; // candidates per pass
const MAX_FAILED = 16;
const FAILED_TTL_MS = 5 * 60_000;
const MAX_REDIRECT_WAIT_MS = 5 * 60_000;
const KICK_REASONS: Record<number, string> = { 1: 'login_elsewhere', 2: 'admin', 3: 'banned', 4: 'server_shutdown' };
const PING = encodeFrame({ op: Op.PING });

/** One connection, from dial to end. */
class Session {
  conn?: Conn;
  hb = 0; // ms
  room = '';
  lastRead = Date.now();
  /** The last ERROR no request waited for: the server closes after it, so it is why the connection ended. */
  serverError?: LcpushError;
  timers: ReturnType<typeof setTimeout>[] = [];
  private handler: ((f: Frame) => void) | null = null;
  private queue: Frame[] = [];
  private endErr?: LcpushError;
  private endFn?: (e: LcpushError) => void;

  constructor(readonly ep: Endpoint) {}

  get ended(): boolean {
    return this.endErr !== undefined;
  }

  frame(f: Frame): void {
    this.lastRead = Date.now();
    if (this.ended) return;
    if (this.handler) this.handler(f);
    else this.queue.push(f); // between AUTH_OK and activation (frames of the same chunk)
  }

  /** Routes frames to h, first the ones that waited. */
  take(h: ((f: Frame) => void) | null): void {
    this.handler = h;
    if (!h) return;
    const q = this.queue;
    this.queue = [];
    for (const f of q) if (!this.ended) h(f);
  }

  end(e: LcpushError): void {
    if (this.endErr) return;
    this.endErr = this.serverError && e.code === 'io' ? this.serverError : e;
    for (const t of this.timers) clearTimeout(t);
    this.conn?.close();
    this.endFn?.(this.endErr);
  }

  onEnd(fn: (e: LcpushError) => void): void {
    if (this.endErr) fn(this.endErr);
    else this.endFn = fn;
  }

  write(frame: Uint8Array): Promise<void> {
    if (this.ended || !this.conn) return Promise.reject(new LcpushError('disconnected', 'connection lost'));
    return this.conn.write(frame);
  }
}

interface Pending {
  s: Session;
  resolve: () => void;
  reject: (e: LcpushError) => void;
  timer: ReturnType<typeof setTimeout>;
}

function serverError(body: Uint8Array): LcpushError {
  try {
    const e = parseJSON<{ code?: unknown; message?: unknown }>(body);
    if (typeof e.code === 'string' && e.code) return new LcpushError(e.code, typeof e.message === 'string' ? e.message : e.code);
  } catch {
    /* below */
  }
  return new LcpushError('internal', 'undecodable ERROR body');
}

function kickError(body: Uint8Array): LcpushError {
  let code = 0;
  let reason = 'undecodable kick';
  try {
    const k = parseJSON<{ code?: unknown; reason?: unknown }>(body);
    code = typeof k.code === 'number' ? k.code : 0;
    reason = typeof k.reason === 'string' && k.reason ? k.reason : (KICK_REASONS[code] ?? 'unknown');
  } catch {
    /* a bad body still ends the connection */
  }
  const e = new LcpushError('kicked', reason);
  e.kickCode = code;
  return e;
}

function redirectError(body: Uint8Array): LcpushError & { redirect: { addrs: string[]; afterMs: number } } {
  let addrs: string[] = [];
  let afterMs = 0;
  let reason = '';
  try {
    const r = parseJSON<{ addrs?: unknown; after_ms?: unknown; reason?: unknown }>(body);
    if (Array.isArray(r.addrs)) addrs = r.addrs.filter((a): a is string => typeof a === 'string' && a !== '').slice(0, MAX_ADDRS);
    if (typeof r.after_ms === 'number') afterMs = Math.min(Math.max(r.after_ms, 0), MAX_REDIRECT_WAIT_MS);
    if (typeof r.reason === 'string') reason = r.reason;
  } catch {
    /* a bad body still means "go elsewhere" */
  }
  const e = new LcpushError('redirected', reason || 'redirected') as LcpushError & { redirect: { addrs: string[]; afterMs: number } };
  e.redirect = { addrs, afterMs };
  return e;
}

const isTerminalKick = (e: LcpushError) => e.code === 'kicked' && e.kickCode !== undefined && e.kickCode >= 1 && e.kickCode <= 3;

/** A device's connection to lcpush. Use the Client of the entry point ("@lcpush/sdk" or "@lcpush/sdk/node"). */
export class ClientBase extends Emitter<ClientEvents> {
  private readonly o: Required<Pick<ClientOptions, 'app' | 'uid' | 'transport' | 'hb' | 'backoffMin' | 'backoffMax' | 'connectTimeout' | 'requestTimeout' | 'maxFrame' | 'sdkName'>> & ClientOptions;
  private readonly dialer: Dialer;
  private readonly dispatchURLs: string[];
  private readonly dedup: Dedup;
  private readonly stopCtl = new AbortController();
  private running = false;
  private stopped = false;
  private stopReason?: LcpushError;
  private closedEmitted = false;
  private sess?: Session;
  private seq = 0;
  private pending = new Map<number, Pending>();
  private binds = new Map<number, string>();
  private acks: bigint[] = [];
  private ackTimer?: ReturnType<typeof setTimeout>;
  private failed: { addr: string; at: number }[] = [];
  private lastGood?: string;
  private cache = new Map<string, { addrs: string[]; expires: number }>(); // dispatcher answers per net
  private dispatchIdx = 0;
  private waiters: { resolve: () => void; reject: (e: LcpushError) => void }[] = [];
  private _state: State | undefined;

  constructor(options: ClientOptions) {
    super();
    const o = options;
    const fail = (m: string) => {
      throw new LcpushError('config', m);
    };
    if (!o.uid) fail('uid is empty');
    if (!Number.isInteger(o.app) || o.app < 0 || o.app > 0xffffffff) fail('app must be a u32');
    if (!o.token && !o.tokenProvider) fail('need token or tokenProvider');
    this.dispatchURLs = o.dispatch === undefined ? [] : Array.isArray(o.dispatch) ? [...o.dispatch] : [o.dispatch];
    for (const u of this.dispatchURLs) if (!/^https?:\/\/[^/]+/.test(u)) fail(`dispatch ${u} is not an http(s) URL`);
    if (this.dispatchURLs.length === 0 && !o.addrs?.length) fail('need dispatch or addrs');
    const transport = o.transport ?? 'tcp';
    if (!TRANSPORTS.includes(transport)) fail(`unknown transport ${transport} (tcp, tls, ws, wss)`);
    for (const a of o.addrs ?? []) parseAddr(a, transport); // throws config errors
    if (!o.dialer) fail('no dialer: import Client from "@lcpush/sdk" or "@lcpush/sdk/node"');
    const backoffMin = o.backoffMin && o.backoffMin > 0 ? o.backoffMin : 500;
    this.o = {
      ...o,
      transport,
      hb: o.hb && o.hb > 0 ? Math.max(1, Math.round(o.hb)) : 30,
      backoffMin,
      backoffMax: Math.max(backoffMin, o.backoffMax && o.backoffMax > 0 ? o.backoffMax : 30_000),
      connectTimeout: o.connectTimeout && o.connectTimeout > 0 ? o.connectTimeout : 5000,
      requestTimeout: o.requestTimeout && o.requestTimeout > 0 ? o.requestTimeout : 10_000,
      maxFrame: o.maxFrame && o.maxFrame >= DEFAULT_MAX_LEN ? o.maxFrame : 4 << 20,
      sdkName: o.sdkName ?? SDK_NAME,
      addrs: [...(o.addrs ?? [])],
    };
    this.dialer = o.dialer!;
    this.dedup = new Dedup(o.dedupWindow && o.dedupWindow > 0 ? o.dedupWindow : 1024);
  }

  /** The current state (undefined before connect). */
  get state(): State | undefined {
    return this._state;
  }

  /** Heartbeat negotiated on the current connection, seconds (0 when not connected). */
  get hb(): number {
    return this.sess ? this.sess.hb / 1000 : 0;
  }

  /**
   * Starts the client: it connects and keeps reconnecting in the background
   * until close() or a final error. Resolves at the first connection;
   * rejects if the client stops for good before (closed, a KICK 1-3, a
   * refused static token). The same outcome is reported by the state
   * events, so the promise may be left unawaited.
   */
  connect(): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopReason ?? new LcpushError('closed', 'client closed'));
    if (this._state === 'connected') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Marked handled: a caller that only listens to events (fire and forget)
    // must not crash on an unhandled rejection; awaiting p still throws.
    p.catch(() => {});
    if (!this.running) {
      this.running = true;
      this.run().catch((err) => this.stop(asLcpushError(err, 'internal')));
    }
    return p;
  }

  /** Closes the connection for good (queued ACKs are sent first, best effort). */
  close(): Promise<void> {
    this.stop(new LcpushError('closed', 'closed by the application'));
    return Promise.resolve();
  }

  /** Acknowledges QoS 1 messages (manual mode); ids as bigint or decimal strings. */
  ack(ids: Iterable<bigint | string | number> | bigint | string | number): void {
    if (this.stopped) return;
    const list = typeof ids === 'object' && ids !== null && Symbol.iterator in ids ? [...ids].map(toId) : [toId(ids as bigint)];
    this.queueAcks(list);
  }

  /** Adds app to the connection (bound again after each reconnect). Rejects with the server's code. */
  async bind(app: number, token: string): Promise<void> {
    await this.request((seq) => encodeJSON({ op: Op.BIND, seq, app }, { token }), true);
    if (this.binds.has(app) || this.binds.size < MAX_BINDS) this.binds.set(app, token);
  }

  /** Removes app from the connection. */
  unbind(app: number): Promise<void> {
    this.binds.delete(app);
    // The server ignores ACKs of apps no longer bound: send queued ones first.
    this.flushAcks();
    return this.request((seq) => encodeFrame({ op: Op.UNBIND, seq, app }), true);
  }

  /** Sends data to app's back end. With reply, resolves on UPSTREAM_OK; without, once written. */
  upstream(app: number, type: number, payload: Uint8Array | string, opts: { reply?: boolean } = {}): Promise<void> {
    const data = typeof payload === 'string' ? utf8(payload) : payload;
    if (MIN_LEN + 2 + data.length > DEFAULT_MAX_LEN) return Promise.reject(new LcpushError('too_large', `upstream of ${data.length} bytes`));
    if (!Number.isInteger(type) || type < 0 || type > 0xffff) return Promise.reject(new LcpushError('config', 'type must be a u16'));
    const reply = !!opts.reply;
    return this.request((seq) => encodeUpstream(seq, app, type, data, reply), reply);
  }

  // ---- lifecycle -------------------------------------------------------

  private setState(state: State, extra: Omit<StateEvent, 'state'> = {}): void {
    if (this.stopped) return;
    this._state = state;
    this.emit('state', { state, ...extra });
    if (state === 'connected') for (const w of this.waiters.splice(0)) w.resolve();
  }

  private stop(reason: LcpushError): void {
    if (this.stopped) return;
    this.flushAcks(); // best effort, before the connection goes
    this.stopped = true;
    this.stopReason = reason;
    this.stopCtl.abort();
    clearTimeout(this.ackTimer);
    this.failPending(undefined, new LcpushError('closed', 'client closed'));
    this.sess?.end(new LcpushError('closed', 'client closed'));
    this.sess = undefined;
    for (const w of this.waiters.splice(0)) w.reject(reason);
    if (!this.closedEmitted) {
      this.closedEmitted = true;
      this._state = 'closed';
      this.emit('state', { state: 'closed', code: reason.kickCode ?? reason.code, reason: reason.message });
    }
  }

  private isTerminal(e: LcpushError): boolean {
    if (isTerminalKick(e)) return true;
    return e.code === 'bad_token' && !this.o.tokenProvider; // a fresh token may fix it
  }

  private async run(): Promise<void> {
    const signal = this.stopCtl.signal;
    let attempt = 0;
    let first: string[] = [];
    let delay = 0;
    while (!this.stopped) {
      if (delay > 0 && !(await sleep(delay, signal))) return;
      let s: Session;
      try {
        s = await this.connectOnce(first, attempt);
      } catch (err) {
        if (this.stopped) return;
        const e = asLcpushError(err);
        this.setState('disconnected', { code: e.kickCode ?? e.code, reason: e.message });
        if (this.isTerminal(e)) return this.stop(e);
        attempt++;
        first = [];
        delay = backoff(this.o.backoffMin, this.o.backoffMax, attempt);
        continue;
      }
      if (this.stopped) return s.end(new LcpushError('closed', 'client closed'));
      const began = Date.now();
      const reason = await this.serve(s);
      this.sess = undefined;
      this.failPending(s, new LcpushError('disconnected', `connection lost: ${reason.message}`));
      this.setState('disconnected', { code: reason.kickCode ?? reason.code, reason: reason.message, addr: s.ep.addr });
      if (this.stopped) return;
      first = [];
      delay = -1;
      if (reason.code === 'kicked') {
        if (isTerminalKick(reason)) return this.stop(reason);
        this.markFailed(s.ep.addr); // server_shutdown: go elsewhere
      } else if (reason.code === 'redirected' && reason.redirect) {
        this.markFailed(s.ep.addr);
        first = reason.redirect.addrs;
        delay = Math.floor(Math.random() * (reason.redirect.afterMs + 1));
      }
      if (Date.now() - began >= this.o.backoffMax) attempt = 0; // the last connection was healthy
      if (delay < 0) delay = backoff(this.o.backoffMin, this.o.backoffMax, attempt);
    }
  }

  /** One pass over the candidates; resolves with an authenticated session. */
  private async connectOnce(first: string[], attempt: number): Promise<Session> {
    let token = this.o.token ?? '';
    if (this.o.tokenProvider) {
      try {
        token = await this.o.tokenProvider();
      } catch (err) {
        const e = new LcpushError('token', `token provider: ${asLcpushError(err).message}`);
        this.emit('error', e);
        throw e;
      }
    }
    const addrs = await this.candidates(first, attempt);
    if (addrs.length === 0) throw new LcpushError('no_address', 'no gateway address');
    let last: LcpushError = new LcpushError('no_address', 'no gateway address');
    for (let i = 0; i < addrs.length && i < 2 * MAX_ADDRS; i++) {
      const addr = addrs[i]!;
      if (this.stopped) throw new LcpushError('closed', 'client closed');
      let ep: Endpoint;
      try {
        ep = parseAddr(addr, this.o.transport);
      } catch (err) {
        last = asLcpushError(err);
        continue;
      }
      this.setState('connecting', { addr });
      try {
        return await this.handshake(ep, token);
      } catch (err) {
        if (this.stopped) throw new LcpushError('closed', 'client closed');
        const e = (last = asLcpushError(err));
        if (e.code === 'bad_token' || isTerminalKick(e)) throw e; // every gateway checks the same token
        this.markFailed(addr);
        if (e.code === 'redirected' && e.redirect) {
          addrs.splice(i + 1, 0, ...e.redirect.addrs);
          if (!(await sleep(Math.floor(Math.random() * (e.redirect.afterMs + 1)), this.stopCtl.signal))) throw e;
        }
      }
    }
    throw last;
  }

  /** Dials ep, sends AUTH and waits for AUTH_OK, all within connectTimeout. */
  private handshake(ep: Endpoint, token: string): Promise<Session> {
    return new Promise((resolve, reject) => {
      const s = new Session(ep);
      const ac = new AbortController();
      let done = false;
      const cleanup = () => {
        done = true;
        clearTimeout(timer);
        this.stopCtl.signal.removeEventListener('abort', onStop);
      };
      const fail = (e: LcpushError) => {
        if (done) return;
        cleanup();
        ac.abort();
        s.end(e);
        reject(e);
      };
      const timer = setTimeout(() => fail(new LcpushError('timeout', `connect to ${ep.addr} timed out`)), this.o.connectTimeout);
      const onStop = () => fail(new LcpushError('closed', 'client closed'));
      this.stopCtl.signal.addEventListener('abort', onStop, { once: true });
      s.onEnd(fail);
      s.take((f) => {
        switch (f.op) {
          case Op.AUTH_OK: {
            let ok: { hb?: unknown; room?: unknown };
            try {
              ok = parseJSON(f.body);
            } catch (err) {
              return fail(asLcpushError(err));
            }
            s.hb = (typeof ok.hb === 'number' && ok.hb > 0 ? ok.hb : this.o.hb) * 1000;
            s.room = typeof ok.room === 'string' ? ok.room : '';
            s.take(null); // later frames wait for activate
            cleanup();
            return resolve(s);
          }
          case Op.ERROR: {
            const e = serverError(f.body);
            this.emit('error', e);
            return fail(e);
          }
          case Op.KICK: {
            const e = kickError(f.body);
            this.emit('kicked', { code: e.kickCode!, reason: e.message });
            return fail(e);
          }
          case Op.REDIRECT: {
            const e = redirectError(f.body);
            this.emit('redirected', { addrs: e.redirect.addrs, afterMs: e.redirect.afterMs, reason: e.message });
            return fail(e);
          }
        }
        // Anything else before AUTH_OK is ignored; the timeout bounds the wait.
      });
      const auth: Record<string, unknown> = { uid: this.o.uid, token };
      if (this.o.device) auth.device = this.o.device;
      if (this.o.net) auth.net = this.o.net;
      auth.hb = this.o.hb;
      auth.sdk = this.o.sdkName;
      const frame = encodeJSON({ op: Op.AUTH, seq: this.nextSeq(), app: this.o.app }, auth);
      this.dialer(ep, { onFrame: (f) => s.frame(f), onClose: (e) => s.end(e) }, { maxFrame: this.o.maxFrame, tls: this.o.tls ?? {}, signal: ac.signal }).then(
        (conn) => {
          s.conn = conn;
          if (done) return conn.close();
          s.write(frame).catch((err) => fail(asLcpushError(err)));
        },
        (err) => fail(asLcpushError(err)),
      );
    });
  }

  /** Makes s current, runs its heartbeat and read timeout, resolves with why it ended. */
  private serve(s: Session): Promise<LcpushError> {
    return new Promise((resolve) => {
      this.sess = s;
      this.lastGood = s.ep.addr;
      s.onEnd(resolve);
      if (s.ended) return;
      const ping = () => {
        s.write(PING).catch(() => {});
        s.timers[0] = setTimeout(ping, s.hb);
      };
      s.timers[0] = setTimeout(ping, s.hb);
      // The server answers each PING: silence for 2 heartbeats plus a grace
      // of half a heartbeat and a second means the path is dead.
      const timeout = 2 * s.hb + s.hb / 2 + 1000;
      const check = () => {
        const idle = Date.now() - s.lastRead;
        if (idle >= timeout) return s.end(new LcpushError('timeout', `no frame for ${idle} ms`));
        s.timers[1] = setTimeout(check, timeout - idle);
      };
      s.timers[1] = setTimeout(check, timeout);
      this.setState('connected', { addr: s.ep.addr, room: s.room });
      if (s.ended || this.sess !== s) return;
      this.flushAcks(); // ids queued while disconnected
      this.rebind(s);
      s.take((f) => this.onFrame(s, f));
    });
  }

  private onFrame(s: Session, f: Frame): void {
    if (f.op !== Op.ERROR) s.serverError = undefined; // the connection went on: that ERROR was not fatal
    switch (f.op) {
      case Op.PUSH:
        return this.onPush(f);
      case Op.UPSTREAM_OK:
      case Op.BIND_OK:
      case Op.UNBIND_OK:
        this.resolve(f.seq);
        return;
      case Op.ERROR: {
        const e = serverError(f.body);
        if (!this.resolve(f.seq, e)) {
          s.serverError = e;
          this.emit('error', e);
        }
        return;
      }
      case Op.KICK: {
        const e = kickError(f.body);
        this.emit('kicked', { code: e.kickCode!, reason: e.message });
        return s.end(e);
      }
      case Op.REDIRECT: {
        const e = redirectError(f.body);
        this.emit('redirected', { addrs: e.redirect.addrs, afterMs: e.redirect.afterMs, reason: e.message });
        return s.end(e);
      }
    }
    // PONG only counts as activity; unknown ops are future extensions.
  }

  private onPush(f: Frame): void {
    const { id, payload } = parsePush(f.body); // shape checked by the decoder
    const qos1 = (f.flags & FLAG_ACK_REQUIRED) !== 0;
    const { fresh, acked } = this.dedup.add(id);
    if (!fresh) {
      // A redelivery: ACK again if we already did (the first ACK was lost);
      // otherwise the app's pending ACK of the first copy covers it.
      if (qos1 && acked) this.queueAcks([id]);
      return;
    }
    this.emit('message', { app: f.app, id, qos: qos1 ? 1 : 0, payload: payload.slice() });
    if (qos1 && !this.o.manualAck) this.queueAcks([id]);
  }

  // ---- ACKs --------------------------------------------------------------

  private queueAcks(ids: bigint[]): void {
    if (ids.length === 0) return;
    this.dedup.markAcked(ids);
    this.acks.push(...ids);
    if (this.acks.length > MAX_PENDING_ACKS) this.acks.splice(0, this.acks.length - MAX_PENDING_ACKS);
    if (this.acks.length >= ACK_BATCH) this.flushAcks();
    else if (!this.ackTimer) this.ackTimer = setTimeout(() => this.flushAcks(), ACK_DELAY_MS);
  }

  /** Sends queued ids, ACK_BATCH per frame; ids that fail stay for the next connection. */
  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const s = this.sess;
    if (!s || s.ended || this.acks.length === 0) return;
    const ids = this.acks.splice(0);
    for (let i = 0; i < ids.length; i += ACK_BATCH) {
      const batch = ids.slice(i, i + ACK_BATCH);
      s.write(encodeAck(batch)).catch(() => {
        if (this.stopped) return;
        this.acks.unshift(...batch);
        if (this.acks.length > MAX_PENDING_ACKS) this.acks.splice(0, this.acks.length - MAX_PENDING_ACKS);
      });
    }
  }

  // ---- requests ----------------------------------------------------------

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1; // Seq 0 is for frames the server starts
    return this.seq;
  }

  private request(build: (seq: number) => Uint8Array, wantReply: boolean): Promise<void> {
    const s = this.sess;
    if (this.stopped) return Promise.reject(new LcpushError('closed', 'client closed'));
    if (!s || s.ended) return Promise.reject(new LcpushError('not_connected', 'not connected'));
    if (this.pending.size >= MAX_PENDING) return Promise.reject(new LcpushError('busy', 'too many requests in flight'));
    const seq = this.nextSeq();
    const frame = build(seq);
    if (!wantReply) return s.write(frame);
    return new Promise<void>((resolve, reject) => {
      // Registered before the write, so a fast reply finds its waiter.
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new LcpushError('timeout', 'no reply'));
      }, this.o.requestTimeout);
      this.pending.set(seq, { s, resolve, reject, timer });
      s.write(frame).catch((err) => this.resolve(seq, asLcpushError(err)));
    });
  }

  private resolve(seq: number, err?: LcpushError): boolean {
    const p = seq === 0 ? undefined : this.pending.get(seq);
    if (!p) return false;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
    return true;
  }

  private failPending(s: Session | undefined, err: LcpushError): void {
    for (const [seq, p] of this.pending) if (!s || p.s === s) this.resolve(seq, err);
  }

  /** Binds again, on a new connection, the apps bound before; an app whose token is now refused is forgotten. */
  private rebind(s: Session): void {
    for (const [app, token] of this.binds) {
      this.request((seq) => encodeJSON({ op: Op.BIND, seq, app }, { token }), true).catch((e: LcpushError) => {
        if (this.sess !== s || ['disconnected', 'closed', 'not_connected', 'timeout'].includes(e.code)) return;
        this.emit('error', e);
        if (this.binds.get(app) === token) this.binds.delete(app);
      });
    }
  }

  // ---- routing -----------------------------------------------------------

  private markFailed(addr: string): void {
    this.failed = this.failed.filter((f) => f.addr !== addr);
    this.failed.push({ addr, at: Date.now() });
    if (this.failed.length > MAX_FAILED) this.failed.splice(0, this.failed.length - MAX_FAILED);
    if (this.lastGood === addr) this.lastGood = undefined;
  }

  private failedList(): string[] {
    const cutoff = Date.now() - FAILED_TTL_MS;
    this.failed = this.failed.filter((f) => f.at >= cutoff);
    return this.failed.map((f) => f.addr);
  }

  /**
   * The addresses of one pass, without duplicates: redirect targets, then
   * the last good address, then the dispatcher's answer and the static
   * addresses, the recently failed ones last.
   */
  private async candidates(first: string[], attempt: number): Promise<string[]> {
    let rest: string[] = [];
    if (this.dispatchURLs.length > 0) rest.push(...(await this.dispatch(attempt)));
    rest.push(...(this.o.addrs ?? []));
    const failed = this.failedList();
    rest = [...rest.filter((a) => !failed.includes(a)), ...rest.filter((a) => failed.includes(a))];
    if (this.lastGood && rest.includes(this.lastGood) && !failed.includes(this.lastGood)) rest.unshift(this.lastGood);
    const out: string[] = [];
    for (const a of [...first, ...rest]) if (a && !out.includes(a) && out.length < MAX_ADDRS) out.push(a);
    return out;
  }

  /**
   * Asks the dispatcher (each URL in turn) for addresses. A fresh cached
   * answer for this net is used on a first attempt with nothing failed; any
   * cached answer is used when no dispatcher answers.
   */
  private async dispatch(attempt: number): Promise<string[]> {
    const net = this.o.net ?? '';
    const failed = this.failedList();
    const cached = this.cache.get(net);
    if (attempt === 0 && failed.length === 0 && cached && Date.now() < cached.expires) return cached.addrs;
    const q = new URLSearchParams({ uid: this.o.uid, app: String(this.o.app) });
    if (net) q.set('net', net);
    q.set('retry', String(attempt));
    q.set('transport', this.o.transport);
    if (failed.length > 0) {
      // host:port for every transport (docs/protocol.md, Transports).
      const hps = [...new Set(failed.map((a) => { try { return parseAddr(a, this.o.transport).hostport; } catch { return a; } }))];
      q.set('failed', hps.join(','));
    }
    const fetchFn = this.o.fetch ?? globalThis.fetch;
    let lastErr: unknown;
    for (let i = 0; i < this.dispatchURLs.length; i++) {
      const idx = (this.dispatchIdx + i) % this.dispatchURLs.length;
      const url = `${this.dispatchURLs[idx]!.replace(/\/+$/, '')}/v1/dispatch?${q}`;
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), this.o.connectTimeout);
      const onStop = () => ac.abort();
      this.stopCtl.signal.addEventListener('abort', onStop, { once: true });
      try {
        const res = await fetchFn(url, { signal: ac.signal });
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        const r = (await res.json()) as { addrs?: unknown; ttl?: unknown };
        const addrs = (Array.isArray(r.addrs) ? r.addrs : []).filter((a): a is string => typeof a === 'string' && a !== '').slice(0, MAX_ADDRS);
        const ttl = typeof r.ttl === 'number' ? r.ttl : 0;
        if (ttl > 0 && addrs.length > 0) this.cache.set(net, { addrs, expires: Date.now() + ttl * 1000 });
        this.dispatchIdx = idx;
        return addrs;
      } catch (err) {
        lastErr = err;
      } finally {
        clearTimeout(timer);
        this.stopCtl.signal.removeEventListener('abort', onStop);
      }
    }
    if (!this.stopped) this.emit('error', new LcpushError('dispatch', `dispatch failed: ${asLcpushError(lastErr).message}`));
    return cached?.addrs ?? [];
  }
}
