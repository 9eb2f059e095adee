// The transport seam: every transport carries the same frames, and the
// client only sees "write one frame", "close", and two callbacks.
import { decodeFrame, type Frame } from './codec.js';
import { LcpushError, asLcpushError } from './errors.js';

export type TransportName = 'tcp' | 'tls' | 'ws' | 'wss';
export const TRANSPORTS: readonly TransportName[] = ['tcp', 'tls', 'ws', 'wss'];
/** The room's WebSocket upgrade path, used when a ws address has none. */
export const WS_PATH = '/v1/ws';
export const WS_SUBPROTOCOL = 'lcpush.v1';

/** One parsed gateway address. */
export interface Endpoint {
  /** The address as given (what state events report). */
  addr: string;
  transport: TransportName;
  host: string; // without IPv6 brackets
  port: number;
  /** host:port, as the dispatcher's failed list names it. */
  hostport: string;
  /** ws and wss: the upgrade URL. */
  url?: string;
}

/**
 * Parses a gateway address: ws://, wss:// URLs; tcp://host:port and
 * tls://host:port; a bare host:port uses the default transport (for ws and
 * wss that means scheme://host:port/v1/ws).
 */
export function parseAddr(addr: string, def: TransportName): Endpoint {
  let t = def;
  let rest = addr;
  const m = /^([a-z]+):\/\/(.*)$/i.exec(addr);
  if (m) {
    t = m[1]!.toLowerCase() as TransportName;
    rest = m[2]!;
    if (!TRANSPORTS.includes(t)) throw new LcpushError('config', `address ${addr}: unknown scheme ${m[1]}`);
  }
  if (t === 'tcp' || t === 'tls') {
    const hp = /^(?:\[([^\]]+)\]|([^:/?#[\]]+)):(\d{1,5})$/.exec(rest);
    if (!hp) throw new LcpushError('config', `address ${addr} is not host:port`);
    const host = hp[1] ?? hp[2]!;
    return { addr, transport: t, host, port: Number(hp[3]), hostport: rest };
  }
  let u: URL;
  try {
    u = new URL(m ? addr : `${t}://${addr}`);
  } catch {
    throw new LcpushError('config', `address ${addr} is not a WebSocket URL`);
  }
  if (!u.hostname || u.username || u.hash) throw new LcpushError('config', `address ${addr} is not a WebSocket URL`);
  if (u.pathname === '' || u.pathname === '/') u.pathname = WS_PATH;
  const port = u.port ? Number(u.port) : t === 'wss' ? 443 : 80;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const hostport = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return { addr, transport: t, host, port, hostport, url: u.toString() };
}

/** What a transport reports to the client. */
export interface ConnHandlers {
  onFrame(f: Frame): void;
  /** Called once when the connection ends after the dial succeeded. */
  onClose(err: LcpushError): void;
}

export interface Conn {
  /** Writes one whole frame; resolves once handed to the socket. */
  write(frame: Uint8Array): Promise<void>;
  close(): void;
}

export interface TlsOptions {
  /** PEM CA certificate(s) to verify the server with (Node). */
  ca?: string | string[];
  /** Name verified and sent as SNI; default the address's host. */
  servername?: string;
  /** Default true. */
  rejectUnauthorized?: boolean;
  /** "sha256/<base64 of SHA-256 of SubjectPublicKeyInfo DER>", any of which must match the peer chain (Node). */
  pins?: string[];
}

export interface DialOptions {
  maxFrame: number;
  tls: TlsOptions;
  /** Aborted when the attempt times out or the client closes. */
  signal: AbortSignal;
}

export type Dialer = (ep: Endpoint, h: ConnHandlers, o: DialOptions) => Promise<Conn>;

/** The part of the WebSocket API (browser, Node's global, the ws package) used here. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/**
 * Runs the protocol over an opened-on-demand WebSocket: one binary message
 * is one frame, Len included. A text message, or one that is not exactly
 * one frame, is a protocol error and drops the connection.
 */
export function dialWebSocket(make: () => WebSocketLike, h: ConnHandlers, o: DialOptions): Promise<Conn> {
  return new Promise((resolve, reject) => {
    let ws: WebSocketLike;
    try {
      ws = make();
    } catch (err) {
      return reject(asLcpushError(err));
    }
    ws.binaryType = 'arraybuffer';
    let open = false;
    let ended = false;
    const end = (err: LcpushError) => {
      if (ended) return;
      ended = true;
      o.signal.removeEventListener('abort', onAbort);
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
      if (open) h.onClose(err);
      else reject(err);
    };
    const onAbort = () => end(new LcpushError('timeout', 'dial aborted'));
    o.signal.addEventListener('abort', onAbort, { once: true });
    ws.onopen = () => {
      open = true;
      resolve(conn);
    };
    ws.onmessage = (ev) => {
      if (ended) return;
      const d = ev.data;
      if (typeof d === 'string') return end(new LcpushError('bad_frame', 'text WebSocket message'));
      const b = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : null;
      if (!b) return end(new LcpushError('bad_frame', 'unexpected WebSocket message type'));
      let f;
      try {
        f = decodeFrame(b, o.maxFrame);
      } catch (err) {
        return end(asLcpushError(err));
      }
      h.onFrame(f);
    };
    ws.onerror = () => {
      // A close event follows with the code; before open, report now.
      if (!open) end(new LcpushError('io', 'WebSocket error'));
    };
    ws.onclose = (ev) => {
      const e = new LcpushError('io', `WebSocket closed: ${ev.code} ${ev.reason}`.trim());
      e.wsCode = ev.code;
      end(e);
    };
    const conn: Conn = {
      write(frame) {
        if (ended || ws.readyState !== 1) return Promise.reject(new LcpushError('disconnected', 'connection closed'));
        try {
          ws.send(frame);
        } catch (err) {
          const e = asLcpushError(err);
          end(e);
          return Promise.reject(e);
        }
        return Promise.resolve();
      },
      close() {
        end(new LcpushError('closed', 'closed by the client'));
      },
    };
  });
}

/** The browser dialer: WebSocket only, on globalThis.WebSocket. */
export const browserDialer: Dialer = (ep, h, o) => {
  if (ep.transport !== 'ws' && ep.transport !== 'wss') {
    return Promise.reject(new LcpushError('config', `transport ${ep.transport} needs the Node entry (@lcpush/sdk/node)`));
  }
  const WS = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => WebSocketLike }).WebSocket;
  if (!WS) return Promise.reject(new LcpushError('config', 'no globalThis.WebSocket'));
  return dialWebSocket(() => new WS(ep.url!, [WS_SUBPROTOCOL]), h, o);
};
