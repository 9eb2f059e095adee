// Client behaviour against fake gateways and a fake dispatcher.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Client, Dedup, backoff, encodeFrame, encodeJSON, encodePush, parseAck, parseJSON, Op, utf8, LcpushError } from '../dist/node.js';
import { acceptAuthed, fakeServer, waitFor } from './helpers.mjs';

const TOKEN = 'tok';
const base = (srv, extra = {}) => ({ addrs: [srv.addr], app: 1, uid: 'alice', token: TOKEN, backoffMin: 20, backoffMax: 60, ...extra });
const record = (c) => {
  const ev = { state: [], message: [], kicked: [], redirected: [], error: [] };
  for (const k of Object.keys(ev)) c.on(k, (e) => ev[k].push(e));
  return ev;
};
const push = (id, text, qos1 = true, app = 1) => encodePush(app, BigInt(id), utf8(text), qos1);

test('backoff is full jitter within [0, min(max, min*2^attempt)]', () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceil = Math.min(30000, 500 * 2 ** attempt);
    assert.equal(backoff(500, 30000, attempt, () => 0), 0);
    assert.equal(backoff(500, 30000, attempt, () => 0.999999999), ceil);
    for (let i = 0; i < 200; i++) {
      const d = backoff(500, 30000, attempt);
      assert.ok(d >= 0 && d <= ceil && Number.isInteger(d), `attempt ${attempt}: ${d}`);
    }
  }
  assert.equal(backoff(500, 30000, 1000, () => 0.999999999), 30000); // no overflow for large attempts
});

test('dedup window remembers the last N ids and their ACK state', () => {
  const d = new Dedup(3);
  assert.deepEqual(d.add(1n), { fresh: true, acked: false });
  assert.deepEqual(d.add(1n), { fresh: false, acked: false });
  d.markAcked([1n, 99n]);
  assert.deepEqual(d.add(1n), { fresh: false, acked: true });
  assert.equal(d.has(99n), false);
  d.add(2n);
  d.add(3n);
  d.add(4n); // evicts 1
  assert.equal(d.length, 3);
  assert.deepEqual(d.add(1n), { fresh: true, acked: false });
  assert.equal(d.has(2n), false);
  const big = 18446744073709551615n;
  assert.equal(new Dedup().add(big).fresh, true);
});

test('config errors are refused at construction', () => {
  assert.throws(() => new Client({ app: 1, uid: 'a', token: 't' }), (e) => e.code === 'config');
  assert.throws(() => new Client({ addrs: ['x'], app: 1, uid: 'a', token: 't' }), (e) => e.code === 'config');
  assert.throws(() => new Client({ addrs: ['1.2.3.4:5'], app: 1, uid: '', token: 't' }), (e) => e.code === 'config');
  assert.throws(() => new Client({ addrs: ['1.2.3.4:5'], app: 1, uid: 'a' }), (e) => e.code === 'config');
  assert.throws(() => new Client({ addrs: ['1.2.3.4:5'], app: 1, uid: 'a', token: 't', transport: 'udp' }), (e) => e.code === 'config');
});

test('auto ACK is batched, a duplicate is not delivered again and is re-ACKed', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv, { hb: 30 }));
  const ev = record(c);
  const connected = c.connect();
  try {
    const conn = await acceptAuthed(srv);
    await connected;
    const auth = parseJSON(conn.auth.body);
    assert.equal(auth.uid, 'alice');
    assert.equal(auth.hb, 30);
    for (let i = 1; i <= 100; i++) conn.write(push(i, `m${i}`));
    const ids = [];
    while (ids.length < 100) {
      const f = await conn.reader.expect();
      assert.equal(f.op, Op.ACK);
      const batch = parseAck(f.body);
      assert.ok(batch.length <= 64);
      ids.push(...batch);
    }
    assert.deepEqual(ids.map(Number), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.equal(ev.message.length, 100);
    conn.write(push(7, 'again'));
    const f = await conn.reader.expect();
    assert.deepEqual(parseAck(f.body), [7n]);
    conn.write(push(101, 'qos0', false));
    await waitFor(() => ev.message.length === 101);
    assert.equal(ev.message[100].qos, 0);
    assert.equal(ev.message.filter((m) => m.id === 7n).length, 1);
  } finally {
    await c.close();
    await srv.close();
  }
});

test('manual ACK: nothing is ACKed until ack(); a duplicate is re-ACKed only once acked', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv, { manualAck: true }));
  const ev = record(c);
  c.connect();
  try {
    const conn = await acceptAuthed(srv);
    conn.write(push('18446744073709551615', 'max'));
    conn.write(push(5, 'five'));
    await waitFor(() => ev.message.length === 2);
    assert.equal(ev.message[0].id, 18446744073709551615n);
    await assert.rejects(conn.reader.expect(200), /no frame/);
    conn.write(push(5, 'five again')); // not acked yet: dropped, no ACK
    await assert.rejects(conn.reader.expect(200), /no frame/);
    c.ack(['18446744073709551615']);
    assert.deepEqual(parseAck((await conn.reader.expect()).body), [18446744073709551615n]);
    conn.write(push('18446744073709551615', 'max again')); // acked: ACKed again
    assert.deepEqual(parseAck((await conn.reader.expect()).body), [18446744073709551615n]);
    assert.equal(ev.message.length, 2);
  } finally {
    await c.close();
    await srv.close();
  }
});

test('bind, unbind and upstream resolve on their replies and reject with the server code', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv));
  c.connect();
  try {
    const conn = await acceptAuthed(srv);
    await waitFor(() => c.state === 'connected');
    const b = c.bind(2, 'tok2');
    const bf = await conn.reader.expect();
    assert.equal(bf.op, Op.BIND);
    assert.equal(bf.app, 2);
    assert.deepEqual(parseJSON(bf.body), { token: 'tok2' });
    const bad = assert.rejects(c.bind(3, 'bad'), (e) => e instanceof LcpushError && e.code === 'bad_token');
    const bf2 = await conn.reader.expect();
    conn.write(encodeJSON({ op: Op.ERROR, seq: bf2.seq, app: 3 }, { code: 'bad_token', message: 'no' }));
    conn.write(encodeFrame({ op: Op.BIND_OK, seq: bf.seq, app: 2 }));
    await b;
    await bad;
    const u = c.upstream(1, 513, 'hi', { reply: true });
    const uf = await conn.reader.expect();
    assert.equal(uf.op, Op.UPSTREAM);
    assert.equal(uf.flags, 2);
    conn.write(encodeFrame({ op: Op.UPSTREAM_OK, seq: uf.seq, app: 1 }));
    await u;
    await c.upstream(1, 1, new Uint8Array([1, 2]));
    assert.equal((await conn.reader.expect()).flags, 0);
    const ub = c.unbind(2);
    const unf = await conn.reader.expect();
    assert.equal(unf.op, Op.UNBIND);
    conn.write(encodeFrame({ op: Op.UNBIND_OK, seq: unf.seq, app: 2 }));
    await ub;
    // A request whose connection drops is rejected.
    const lost = assert.rejects(c.bind(4, 'x'), (e) => e.code === 'disconnected');
    await conn.reader.expect();
    conn.sock.destroy();
    await lost;
  } finally {
    await c.close();
    await srv.close();
  }
});

test('bound apps are bound again after a reconnect', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv));
  c.connect();
  try {
    let conn = await acceptAuthed(srv);
    await waitFor(() => c.state === 'connected');
    const b = c.bind(2, 'tok2');
    const bf = await conn.reader.expect();
    conn.write(encodeFrame({ op: Op.BIND_OK, seq: bf.seq, app: 2 }));
    await b;
    conn.sock.destroy();
    conn = await acceptAuthed(srv);
    const again = await conn.reader.expect();
    assert.equal(again.op, Op.BIND);
    assert.equal(again.app, 2);
  } finally {
    await c.close();
    await srv.close();
  }
});

test('KICK 4 reconnects; KICK 2 is final', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv));
  const ev = record(c);
  c.connect();
  try {
    let conn = await acceptAuthed(srv);
    conn.write(encodeJSON({ op: Op.KICK }, { code: 4, reason: 'server_shutdown' }));
    conn = await acceptAuthed(srv);
    await waitFor(() => ev.state.filter((s) => s.state === 'connected').length === 2);
    conn.write(encodeJSON({ op: Op.KICK }, { code: 2, reason: 'admin' }));
    await waitFor(() => c.state === 'closed');
    assert.deepEqual(ev.kicked, [{ code: 4, reason: 'server_shutdown' }, { code: 2, reason: 'admin' }]);
    assert.equal(await srv.accept(300), null);
    assert.deepEqual(ev.state.at(-1), { state: 'closed', code: 2, reason: 'admin' });
  } finally {
    await c.close();
    await srv.close();
  }
});

test('REDIRECT is followed to the new address', async () => {
  const a = await fakeServer();
  const b = await fakeServer();
  const c = new Client(base(a));
  const ev = record(c);
  c.connect();
  try {
    const conn = await acceptAuthed(a);
    conn.write(encodeJSON({ op: Op.REDIRECT }, { addrs: [b.addr], after_ms: 50, reason: 'drain' }));
    await acceptAuthed(b);
    await waitFor(() => ev.state.filter((s) => s.state === 'connected').length === 2);
    assert.deepEqual(ev.redirected, [{ addrs: [b.addr], afterMs: 50, reason: 'drain' }]);
    assert.equal(ev.state.filter((s) => s.state === 'connected').at(-1).addr, b.addr);
  } finally {
    await c.close();
    await a.close();
    await b.close();
  }
});

test('a token provider is asked again after bad_token, a static token is not', async () => {
  const srv = await fakeServer();
  let calls = 0;
  const c = new Client(base(srv, { token: undefined, tokenProvider: async () => `t${++calls}` }));
  c.connect();
  try {
    const first = await srv.accept();
    const auth = await first.reader.expect();
    assert.equal(parseJSON(auth.body).token, 't1');
    first.write(encodeJSON({ op: Op.ERROR, seq: auth.seq, app: 1 }, { code: 'bad_token', message: 'expired' }));
    first.sock.end();
    const conn = await acceptAuthed(srv);
    assert.equal(parseJSON(conn.auth.body).token, 't2');
    await waitFor(() => c.state === 'connected');
  } finally {
    await c.close();
    await srv.close();
  }
});

test('silence past 2*hb + grace drops the connection and reconnects; PINGs every hb', async () => {
  const srv = await fakeServer();
  const c = new Client(base(srv, { hb: 1 }));
  c.connect();
  try {
    const conn = await acceptAuthed(srv, { hb: 1 });
    const t0 = Date.now();
    const ping = await conn.reader.next(2500);
    assert.equal(ping.op, Op.PING);
    assert.ok(Date.now() - t0 >= 800);
    // No PONG from here on: the client gives up after about 3.5 s.
    const again = await acceptAuthed(srv, { hb: 1 }).catch(() => null);
    assert.ok(again, 'reconnected');
    assert.ok(Date.now() - t0 >= 3000, `dropped after ${Date.now() - t0} ms`);
  } finally {
    await c.close();
    await srv.close();
  }
});

test('dispatcher: asked with uid/app/net/transport, failed addresses reported, answers cached per net and used when it is down', async () => {
  const dead = await fakeServer();
  const deadAddr = dead.addr;
  await dead.close(); // refuses connections
  const srv = await fakeServer();
  const queries = [];
  let up = true;
  const disp = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    queries.push(Object.fromEntries(u.searchParams));
    if (!up) return res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ addrs: [deadAddr, srv.addr], ttl: 60 }));
  });
  await new Promise((r) => disp.listen(0, '127.0.0.1', r));
  const c = new Client({ dispatch: `http://127.0.0.1:${disp.address().port}`, app: 1, uid: 'alice', token: TOKEN, net: 'wifi', backoffMin: 20, backoffMax: 60 });
  c.connect();
  try {
    let conn = await acceptAuthed(srv);
    assert.equal(queries.length, 1);
    assert.deepEqual(queries[0], { uid: 'alice', app: '1', net: 'wifi', retry: '0', transport: 'tcp' });
    up = false;
    conn.sock.destroy();
    conn = await acceptAuthed(srv); // dispatcher down: the cached answer is used
    assert.equal(queries.at(-1).failed, deadAddr);
    assert.ok(queries.length >= 2);
    // The last good address is tried first: no dial of the dead one before it.
    await waitFor(() => c.state === 'connected');
  } finally {
    await c.close();
    await srv.close();
    disp.close();
  }
});
