#!/usr/bin/env node
// The SDK driver of conformance/driver.md: JSON-lines commands on stdin,
// events on stdout (one write per line), logs on stderr.
import { closeSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Client, SDK_NAME, fromUtf8 } from '../dist/node.js';

let outClosed = false;
const out = (ev) => outClosed || process.stdout.write(JSON.stringify(ev) + '\n');
process.stdout.on('error', () => {});
const log = (...a) => process.stderr.write(`driver: ${a.join(' ')}\n`);
const clients = new Map(); // name -> Client

function options(name, cfg) {
  const o = {
    app: cfg.app, uid: cfg.uid, transport: cfg.transport || 'tcp',
    dispatch: cfg.dispatch || undefined, addrs: cfg.addrs || undefined,
    net: cfg.net || undefined, hb: cfg.hb || undefined, manualAck: !!cfg.manual_ack,
    backoffMin: cfg.backoff_min_ms || undefined, backoffMax: cfg.backoff_max_ms || undefined,
    device: cfg.device || undefined,
  };
  if (cfg.token_url) {
    o.tokenProvider = async () => {
      const res = await fetch(cfg.token_url);
      if (res.status !== 200) throw new Error(`token_url: status ${res.status}`);
      const { token } = await res.json();
      if (typeof token !== 'string') throw new Error('token_url: no token field');
      return token;
    };
  } else o.token = cfg.token;
  // TLS extras, for tls and wss (not in driver.md's table; ignored when absent).
  const tls = {};
  if (cfg.ca) tls.ca = cfg.ca;
  if (cfg.ca_file) tls.ca = readFileSync(cfg.ca_file, 'utf8');
  if (cfg.server_name || cfg.servername) tls.servername = cfg.server_name || cfg.servername;
  if (cfg.pins) tls.pins = cfg.pins;
  if (cfg.insecure) tls.rejectUnauthorized = false;
  o.tls = tls;
  return o;
}

function attach(name, c) {
  c.on('state', (s) => {
    const ev = { ev: 'state', client: name, state: s.state };
    if (s.addr !== undefined) ev.addr = s.addr;
    if (s.room !== undefined) ev.room = s.room;
    if (s.code !== undefined) ev.code = s.code;
    if (s.reason !== undefined) ev.reason = s.reason;
    out(ev);
  });
  c.on('message', (m) => out({ ev: 'message', client: name, app: m.app, id: m.id.toString(), qos: m.qos, payload: fromUtf8(m.payload) }));
  c.on('kicked', (k) => out({ ev: 'kicked', client: name, code: k.code, reason: k.reason }));
  c.on('redirected', (r) => out({ ev: 'redirected', client: name, addrs: r.addrs, after_ms: r.afterMs }));
  c.on('error', (e) => out({ ev: 'error', client: name, code: e.code, message: e.message }));
}

const errText = (e) => (e && typeof e.code === 'string' ? e.code : String(e?.message ?? e));

async function run(cmd) {
  const done = (ok, error) => out(ok ? { ev: 'done', id: cmd.id, ok: true } : { ev: 'done', id: cmd.id, ok: false, error: String(error) });
  try {
    if (cmd.cmd === 'ping') return done(true);
    if (cmd.cmd === 'new') {
      if (clients.has(cmd.client)) clients.get(cmd.client).close();
      let c;
      try {
        c = new Client(options(cmd.client, cmd.config || {}));
      } catch (e) {
        return done(false, e?.message ?? String(e));
      }
      attach(cmd.client, c);
      clients.set(cmd.client, c);
      return done(true);
    }
    const known = ['connect', 'ack', 'bind', 'unbind', 'upstream', 'close'];
    if (!known.includes(cmd.cmd)) return done(false, 'unknown_cmd');
    const c = clients.get(cmd.client);
    if (!c) return done(false, 'no_such_client');
    switch (cmd.cmd) {
      case 'connect':
        c.connect().catch((e) => log(cmd.client, 'stopped before connecting:', errText(e)));
        return done(true);
      case 'ack':
        c.ack((cmd.ids || []).map(String));
        return done(true);
      case 'bind':
        await c.bind(cmd.app, cmd.token);
        return done(true);
      case 'unbind':
        await c.unbind(cmd.app);
        return done(true);
      case 'upstream':
        await c.upstream(cmd.app, cmd.type ?? 0, cmd.payload ?? '', { reply: !!cmd.reply });
        return done(true);
      case 'close':
        await c.close();
        clients.delete(cmd.client);
        return done(true);
    }
  } catch (e) {
    done(false, errText(e));
  }
}

out({ ev: 'ready', sdk: SDK_NAME });
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    return log('bad command line:', line);
  }
  run(cmd); // commands overlap: a bind may wait while others run
});
rl.on('close', async () => {
  await Promise.all([...clients.values()].map((c) => c.close()));
  // Close stdout and only then exit, a little later: the reader sees EOF
  // before the process is gone (a parent that closes the pipe when the
  // child exits then cannot race its own last read).
  process.stdout.write('', () => {
    outClosed = true;
    try {
      closeSync(1);
    } catch {
      /* already closed */
    }
    setTimeout(() => process.exit(0), 200);
  });
});
