// Test helpers: the conformance vectors and a fake gateway on node:net.
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { FrameDecoder, encodeJSON, Op } from '../dist/node.js';

const root = new URL('../../../conformance/', import.meta.url);
export const vectors = (name) => JSON.parse(readFileSync(new URL(name, root), 'utf8'));

/** Reads frames from a socket: next(ms) resolves a frame, or null at EOF; rejects on timeout. */
export class FrameReader {
  constructor(sock) {
    this.sock = sock;
    this.frames = [];
    this.eof = false;
    this.waiter = null;
    const dec = new FrameDecoder(1 << 20);
    sock.on('data', (b) => {
      for (const f of dec.push(new Uint8Array(b))) this.frames.push(f);
      this.wake();
    });
    const end = () => {
      this.eof = true;
      this.wake();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end);
  }
  wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
  async next(ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.frames.length) return this.frames.shift();
      if (this.eof) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${ms} ms`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }
  /** Next frame whose op is not in skip. */
  async expect(ms = 5000, skip = [Op.PING]) {
    for (;;) {
      const f = await this.next(ms);
      if (!f || !skip.includes(f.op)) return f;
    }
  }
}

/** A fake gateway: every accepted connection is queued; accept(ms) takes one. */
export async function fakeServer() {
  const conns = [];
  let waiter = null;
  let accepted = 0;
  const srv = net.createServer((sock) => {
    accepted++;
    conns.push(sock);
    const w = waiter;
    waiter = null;
    w?.();
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const all = new Set();
  srv.on('connection', (s) => all.add(s));
  return {
    addr: `127.0.0.1:${srv.address().port}`,
    get accepted() {
      return accepted;
    },
    async accept(ms = 5000) {
      const deadline = Date.now() + ms;
      while (!conns.length) {
        const left = deadline - Date.now();
        if (left <= 0) return null;
        await new Promise((r) => {
          const t = setTimeout(r, left);
          waiter = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      const sock = conns.shift();
      return { sock, reader: new FrameReader(sock), write: (b) => sock.write(b) };
    },
    close() {
      for (const s of all) s.destroy();
      return new Promise((r) => srv.close(r));
    },
  };
}

/** Accepts one connection and answers its AUTH with AUTH_OK. */
export async function acceptAuthed(srv, { hb = 30, room = 'room-1' } = {}) {
  const c = await srv.accept();
  if (!c) throw new Error('the client did not connect');
  const auth = await c.reader.expect();
  if (!auth || auth.op !== Op.AUTH) throw new Error(`want AUTH, got ${auth?.op}`);
  c.auth = auth;
  c.write(encodeJSON({ op: Op.AUTH_OK, seq: auth.seq, app: auth.app }, { hb, room, server_time: 1 }));
  return c;
}

/** Waits until cond() is true. */
export async function waitFor(cond, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
