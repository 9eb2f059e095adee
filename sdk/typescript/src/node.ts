// Node entry: everything of the browser entry plus raw TCP, TLS (with key
// pinning) and WebSocket for Node (globalThis.WebSocket, else the ws package,
// loaded only when first needed).
import { createHash, createHmac, X509Certificate } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ClientBase, type ClientOptions } from './client.js';
import { FrameDecoder, utf8 } from './codec.js';
import { LcpushError, asLcpushError } from './errors.js';
import { tokenMessage } from './token.js';
import { WS_SUBPROTOCOL, dialWebSocket, type Conn, type ConnHandlers, type DialOptions, type Dialer, type Endpoint, type TlsOptions, type WebSocketLike } from './transport.js';

export * from './index.js';

/** Signs a token synchronously with node:crypto (same result as signToken). */
export function signTokenSync(secret: string, app: number, uid: string, expiry: number): string {
  return `${expiry}.${createHmac('sha256', secret).update(utf8(tokenMessage(app, uid, expiry))).digest('hex')}`;
}

/** The pin of a certificate (PEM or DER): "sha256/" + base64(SHA-256(SubjectPublicKeyInfo DER)). */
export function pinOf(cert: string | Uint8Array | X509Certificate): string {
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  const spki = x.publicKey.export({ type: 'spki', format: 'der' });
  return 'sha256/' + createHash('sha256').update(spki).digest('base64');
}

function parsePins(pins: string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const p of pins ?? []) {
    const b64 = p.trim().replace(/^sha256\//, '');
    if (Buffer.from(b64, 'base64').length !== 32) throw new LcpushError('config', `pin ${p} is not sha256/<base64 of 32 bytes>`);
    out.add(b64);
  }
  return out;
}

/** Whether any certificate of the peer chain (leaf up to the root Node found) has a pinned key. */
function chainMatches(leaf: tls.DetailedPeerCertificate | undefined, pins: Set<string>): boolean {
  const seen = new Set<unknown>();
  for (let c = leaf; c && !seen.has(c) && c.raw; c = c.issuerCertificate) {
    seen.add(c);
    if (pins.has(pinOf(c.raw).slice(7))) return true;
  }
  return false;
}

function tlsOptions(ep: Endpoint, o: TlsOptions): tls.ConnectionOptions {
  const servername = o.servername ?? (net.isIP(ep.host) ? undefined : ep.host);
  const pins = parsePins(o.pins);
  return {
    ca: o.ca,
    servername,
    rejectUnauthorized: o.rejectUnauthorized ?? true,
    minVersion: 'TLSv1.2',
    // Runs after chain verification, with the whole chain; the ws package
    // passes it through for wss.
    checkServerIdentity: (host, cert) => {
      const err = tls.checkServerIdentity(servername ?? host, cert);
      if (err) return err;
      if (pins.size > 0 && !chainMatches(cert as tls.DetailedPeerCertificate, pins)) {
        return new LcpushError('pin_mismatch', `server key matches no pin (leaf ${cert.raw ? pinOf(cert.raw) : '?'})`) as unknown as Error;
      }
      return undefined;
    },
  };
}

/** Frames back to back on a TCP or TLS stream. */
function dialStream(ep: Endpoint, h: ConnHandlers, o: DialOptions): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const secure = ep.transport === 'tls';
    let pins: Set<string>;
    try {
      pins = parsePins(o.tls.pins);
    } catch (err) {
      return reject(err);
    }
    const sock: net.Socket = secure
      ? tls.connect({ host: ep.host, port: ep.port, ...tlsOptions(ep, o.tls) })
      : net.connect({ host: ep.host, port: ep.port });
    sock.setNoDelay(true);
    const decoder = new FrameDecoder(o.maxFrame);
    let open = false;
    let ended = false;
    const end = (err: LcpushError, graceful = false) => {
      if (ended) return;
      ended = true;
      o.signal.removeEventListener('abort', onAbort);
      if (graceful) {
        // Let queued frames (the last ACKs) go out, then FIN.
        sock.end();
        setTimeout(() => sock.destroy(), 2000).unref();
      } else sock.destroy();
      if (open) h.onClose(err);
      else reject(err);
    };
    const onAbort = () => end(new LcpushError('timeout', 'dial aborted'));
    o.signal.addEventListener('abort', onAbort, { once: true });
    sock.once(secure ? 'secureConnect' : 'connect', () => {
      // checkServerIdentity is skipped on a resumed session or with
      // rejectUnauthorized false: check the pins here too.
      if (secure && pins.size > 0 && !chainMatches((sock as tls.TLSSocket).getPeerCertificate(true), pins)) {
        return end(new LcpushError('pin_mismatch', 'server key matches no pin'));
      }
      open = true;
      resolve(conn);
    });
    sock.on('data', (chunk: Buffer) => {
      if (ended) return;
      let frames;
      try {
        frames = decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      } catch (err) {
        return end(asLcpushError(err));
      }
      for (const f of frames) {
        if (ended) break;
        h.onFrame(f);
      }
    });
    sock.on('error', (err) => end(asLcpushError(err)));
    sock.on('close', () => end(new LcpushError('io', 'connection closed by the server')));
    const conn: Conn = {
      write(frame) {
        return new Promise((res, rej) => {
          if (ended) return rej(new LcpushError('disconnected', 'connection closed'));
          sock.write(frame, (err) => (err ? rej(asLcpushError(err)) : res()));
        });
      },
      close() {
        end(new LcpushError('closed', 'closed by the client'), true);
      },
    };
  });
}

type WSCtor = new (url: string, protocols: string[], opts?: Record<string, unknown>) => WebSocketLike;
let wsPackage: Promise<WSCtor> | undefined;

async function dialNodeWebSocket(ep: Endpoint, h: ConnHandlers, o: DialOptions): Promise<Conn> {
  const t = o.tls;
  const customTls = ep.transport === 'wss' && (t.ca !== undefined || (t.pins?.length ?? 0) > 0 || t.servername !== undefined || t.rejectUnauthorized === false);
  const G = (globalThis as { WebSocket?: WSCtor }).WebSocket;
  if (G && !customTls) return dialWebSocket(() => new G(ep.url!, [WS_SUBPROTOCOL]), h, o);
  // Dynamic, so the browser entry never touches it and Node loads it once.
  wsPackage ??= import('ws').then((m) => (m.WebSocket ?? m.default) as unknown as WSCtor);
  const WS = await wsPackage;
  const opts: Record<string, unknown> = { perMessageDeflate: false, maxPayload: o.maxFrame + 4 };
  if (ep.transport === 'wss') Object.assign(opts, tlsOptions(ep, t));
  return dialWebSocket(() => new WS(ep.url!, [WS_SUBPROTOCOL], opts), h, o);
}

/** Dials tcp, tls, ws and wss endpoints from Node. */
export const nodeDialer: Dialer = (ep, h, o) =>
  ep.transport === 'ws' || ep.transport === 'wss' ? dialNodeWebSocket(ep, h, o) : dialStream(ep, h, o);

/** The client for Node: tcp (default), tls, ws and wss. */
export class Client extends ClientBase {
  constructor(options: ClientOptions) {
    super({ dialer: nodeDialer, ...options });
  }
}

