// The other transports (WebSocket, TLS with pins), address parsing, and the
// browser entry's import graph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { WebSocketServer } from 'ws';
import { Client, FrameDecoder, Op, decodeFrame, encodeJSON, encodePush, parseAck, parseAddr, pinOf, utf8 } from '../dist/node.js';
import { FrameReader, waitFor } from './helpers.mjs';

test('addresses: bare host:port takes the transport, URLs name their own', () => {
  assert.deepEqual(parseAddr('127.0.0.1:7000', 'tcp'), { addr: '127.0.0.1:7000', transport: 'tcp', host: '127.0.0.1', port: 7000, hostport: '127.0.0.1:7000' });
  assert.equal(parseAddr('h:7001', 'ws').url, 'ws://h:7001/v1/ws');
  assert.equal(parseAddr('wss://h/', 'tcp').hostport, 'h:443');
  assert.equal(parseAddr('ws://h:1/x', 'tcp').url, 'ws://h:1/x');
  assert.equal(parseAddr('tls://[::1]:7443', 'tcp').host, '::1');
  assert.equal(parseAddr('ws://[::1]:7001/v1/ws', 'tcp').hostport, '[::1]:7001');
  assert.throws(() => parseAddr('h', 'tcp'), (e) => e.code === 'config');
  assert.throws(() => parseAddr('quic://h:1', 'tcp'), (e) => e.code === 'config');
});

test('the browser entry imports nothing from node: and no package', () => {
  const seen = new Set();
  const walk = (url) => {
    if (seen.has(url.href)) return;
    seen.add(url.href);
    const src = readFileSync(url, 'utf8');
    for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      assert.ok(spec.startsWith('./'), `${url.pathname} imports ${spec}`);
      walk(new URL(spec, url));
    }
  };
  walk(new URL('../dist/index.js', import.meta.url));
  assert.ok(seen.size >= 5);
});

test('WebSocket: subprotocol lcpush.v1, one binary message per frame, a text message drops the connection', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/ws', handleProtocols: (p) => (p.has('lcpush.v1') ? 'lcpush.v1' : false) });
  await new Promise((r) => wss.once('listening', r));
  const conns = [];
  wss.on('connection', (ws, req) => conns.push({ ws, req, frames: [] }) && ws.on('message', (d, bin) => conns.at(-1) && conns.find((c) => c.ws === ws).frames.push(bin ? decodeFrame(new Uint8Array(d)) : 'text')));
  const c = new Client({ transport: 'ws', addrs: [`127.0.0.1:${wss.address().port}`], app: 1, uid: 'u', token: 't', backoffMin: 20, backoffMax: 40 });
  const got = [];
  c.on('message', (m) => got.push(m));
  c.connect();
  try {
    await waitFor(() => conns[0]?.frames.length === 1);
    const s = conns[0];
    assert.equal(s.req.headers['sec-websocket-protocol'], 'lcpush.v1');
    assert.equal(s.req.headers.origin, undefined);
    const auth = s.frames[0];
    assert.equal(auth.op, Op.AUTH);
    s.ws.send(encodeJSON({ op: Op.AUTH_OK, seq: auth.seq, app: 1 }, { hb: 30, room: 'r' }));
    s.ws.send(encodePush(1, 9n, utf8('hi'), true));
    await waitFor(() => s.frames.length === 2);
    assert.deepEqual(parseAck(s.frames[1].body), [9n]);
    assert.equal(got.length, 1);
    s.ws.send('not a frame');
    await waitFor(() => conns.length === 2, 5000, 'a reconnect after the text message');
  } finally {
    await c.close();
    for (const x of conns) x.ws.terminate();
    wss.close();
  }
});

function makeCert() {
  const dir = mkdtempSync(join(tmpdir(), 'lcpush-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') };
}

test('TLS: verified with ca, pins checked against the chain', async (t) => {
  const kc = makeCert();
  if (!kc) return t.skip('no openssl');
  const conns = [];
  const srv = tls.createServer({ key: kc.key, cert: kc.cert }, (sock) => {
    const reader = new FrameReader(sock);
    conns.push({ sock, reader });
  });
  srv.on('tlsClientError', () => {});
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const addr = `127.0.0.1:${srv.address().port}`;
  const mk = (tlsOpts) => new Client({ transport: 'tls', addrs: [addr], app: 1, uid: 'u', token: 't', backoffMin: 20, backoffMax: 40, tls: tlsOpts });
  const good = mk({ ca: kc.cert, pins: [pinOf(kc.cert), 'sha256/' + Buffer.alloc(32).toString('base64')] });
  const wrongPin = mk({ ca: kc.cert, pins: ['sha256/' + Buffer.alloc(32).toString('base64')] });
  const noCa = mk({});
  const errs = { wrongPin: [], noCa: [] };
  wrongPin.on('state', (s) => s.state === 'disconnected' && errs.wrongPin.push(s.code));
  noCa.on('state', (s) => s.state === 'disconnected' && errs.noCa.push(s.code));
  try {
    good.connect();
    await waitFor(() => conns.length === 1);
    const auth = await conns[0].reader.expect();
    assert.equal(auth.op, Op.AUTH);
    conns[0].sock.write(encodeJSON({ op: Op.AUTH_OK, seq: auth.seq, app: 1 }, { hb: 30, room: 'r' }));
    await waitFor(() => good.state === 'connected');
    wrongPin.connect();
    noCa.connect();
    await waitFor(() => errs.wrongPin.length > 0 && errs.noCa.length > 0);
    assert.ok(errs.wrongPin.every((c) => c === 'pin_mismatch'), String(errs.wrongPin));
    assert.ok(errs.noCa.length > 0);
    assert.equal(wrongPin.state === 'connected' || noCa.state === 'connected', false);
  } finally {
    await Promise.all([good.close(), wrongPin.close(), noCa.close()]);
    for (const c of conns) c.sock.destroy();
    srv.close();
  }
});

test('a frame over the client maximum drops the connection (decided from Len)', () => {
  const d = new FrameDecoder(4 << 20);
  assert.throws(() => d.push(new Uint8Array([0x01, 0, 0, 0])), (e) => e.code === 'frame_too_large');
});

test('WSS through the ws package: ca verified, pins checked', async (t) => {
  const kc = makeCert();
  if (!kc) return t.skip('no openssl');
  const https = await import('node:https');
  const server = https.createServer({ key: kc.key, cert: kc.cert });
  const wss = new WebSocketServer({ server, path: '/v1/ws' });
  const frames = [];
  wss.on('connection', (ws) => ws.on('message', (d) => {
    const f = decodeFrame(new Uint8Array(d));
    frames.push(f);
    if (f.op === Op.AUTH) ws.send(encodeJSON({ op: Op.AUTH_OK, seq: f.seq, app: 1 }, { hb: 30, room: 'r' }));
  }));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `wss://localhost:${server.address().port}/v1/ws`;
  const zero = 'sha256/' + Buffer.alloc(32).toString('base64');
  const good = new Client({ addrs: [url], app: 1, uid: 'u', token: 't', tls: { ca: kc.cert, pins: [pinOf(kc.cert)] } });
  const bad = new Client({ addrs: [url], app: 1, uid: 'u', token: 't', backoffMin: 20, backoffMax: 40, tls: { ca: kc.cert, pins: [zero] } });
  const badStates = [];
  bad.on('state', (s) => badStates.push(s));
  try {
    await good.connect();
    bad.connect();
    await waitFor(() => badStates.some((s) => s.state === 'disconnected'));
    assert.notEqual(bad.state, 'connected');
    assert.equal(frames.filter((f) => f.op === Op.AUTH).length, 1); // the pinned-out client never sent AUTH
  } finally {
    await Promise.all([good.close(), bad.close()]);
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.close();
    server.closeAllConnections?.();
  }
});
