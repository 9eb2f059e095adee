// Every conformance/sessions.json script, played by a fake server exactly as
// pkg/sdk/conformance_test.go plays them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, fromHex, parseAck, parseJSON, toHex } from '../dist/node.js';
import { fakeServer, vectors } from './helpers.mjs';

const { sessions } = vectors('sessions.json');
assert.ok(sessions.length >= 4);

for (const sc of sessions) {
  test(`session ${sc.name}`, async () => {
    const srv = await fakeServer();
    const got = [];
    const c = new Client({
      addrs: [srv.addr], app: sc.client.app, uid: sc.client.uid, token: sc.client.token, hb: sc.client.hb,
      backoffMin: 50, backoffMax: 100,
    });
    c.on('message', (m) => got.push(m));
    c.connect().catch(() => {});
    try {
      const conn = await srv.accept(5000);
      assert.ok(conn, 'the client did not connect');
      let lastSeq = 0;
      for (const [i, st] of sc.steps.entries()) {
        switch (st.do) {
          case 'send': {
            const b = fromHex(st.hex);
            if (st.reply) new DataView(b.buffer).setUint32(8, lastSeq);
            conn.write(b);
            break;
          }
          case 'expect': {
            const f = await conn.reader.expect(st.within_ms || 5000, st.skip ?? []);
            assert.ok(f, `step ${i}: EOF, want op ${st.op}`);
            assert.equal(f.op, st.op, `step ${i}: op`);
            if (st.app !== undefined) assert.equal(f.app, st.app, `step ${i}: app`);
            lastSeq = f.seq;
            if (st.json) {
              const body = parseJSON(f.body);
              for (const [k, want] of Object.entries(st.json)) assert.deepEqual(body[k], want, `step ${i}: ${k}`);
            }
            if (st.ack_ids) assert.deepEqual(parseAck(f.body).map(String), st.ack_ids, `step ${i}: ACK ids`);
            break;
          }
          case 'expect_close': {
            for (;;) {
              const f = await conn.reader.next(5000); // throws if the client keeps the connection open
              if (!f) break;
              assert.ok((st.skip ?? []).includes(f.op), `step ${i}: got op ${f.op}, want the client to close`);
            }
            const again = await srv.accept(st.quiet_ms);
            if (again) again.sock.destroy();
            assert.equal(again, null, `step ${i}: the client came back`);
            break;
          }
          default:
            assert.fail(`step ${i}: unknown step ${st.do}`);
        }
      }
      for (const [i, want] of (sc.deliver ?? []).entries()) {
        const deadline = Date.now() + 5000;
        while (got.length <= i && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        const m = got[i];
        assert.ok(m, `message ${want.id} not delivered`);
        assert.deepEqual({ id: m.id.toString(), payload: toHex(m.payload), qos: m.qos }, { id: want.id, payload: want.payload_hex, qos: want.qos });
      }
      assert.equal(got.length, (sc.deliver ?? []).length, 'no other message delivered');
    } finally {
      await c.close();
      await srv.close();
    }
  });
}
