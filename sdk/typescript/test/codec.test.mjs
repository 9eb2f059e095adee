import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FrameDecoder, ProtocolError, decodeFrame, encodeFrame, encodeJSON, encodeAck, encodePush, encodeUpstream,
  fromHex, toHex, parseAck, parsePush, parseUpstream, parseJSON, signToken, signTokenSync, DEFAULT_MAX_LEN, Op,
} from '../dist/node.js';
import { vectors } from './helpers.mjs';

const frames = vectors('frames.json');
const tokens = vectors('tokens.json');

test('max_len is the default maximum', () => {
  assert.equal(frames.max_len, DEFAULT_MAX_LEN);
});

for (const v of frames.frames) {
  test(`frame ${v.name}: encode`, () => {
    const body = fromHex(v.body_hex);
    assert.equal(toHex(encodeFrame({ op: v.op, flags: v.flags, seq: v.seq, app: v.app }, body)), v.hex);
    if (v.json) assert.equal(toHex(encodeJSON({ op: v.op, flags: v.flags, seq: v.seq, app: v.app }, v.json)), v.hex);
    if (v.msg_id !== undefined) assert.equal(toHex(encodePush(v.app, BigInt(v.msg_id), fromHex(v.payload_hex), v.qos === 1)), v.hex);
    if (v.ack_ids) assert.equal(toHex(encodeAck(v.ack_ids.map(BigInt), v.seq, v.app)), v.hex);
    if (v.upstream_type !== undefined) {
      assert.equal(toHex(encodeUpstream(v.seq, v.app, v.upstream_type, fromHex(v.payload_hex), (v.flags & 2) !== 0)), v.hex);
    }
  });
  test(`frame ${v.name}: decode`, () => {
    const f = decodeFrame(fromHex(v.hex));
    assert.deepEqual({ op: f.op, flags: f.flags, seq: f.seq, app: f.app, body: toHex(f.body) }, { op: v.op, flags: v.flags, seq: v.seq, app: v.app, body: v.body_hex });
    if (v.json) assert.deepEqual(parseJSON(f.body), v.json);
    if (v.msg_id !== undefined) {
      const p = parsePush(f.body);
      assert.equal(p.id.toString(), v.msg_id);
      assert.equal(toHex(p.payload), v.payload_hex);
      assert.equal((f.flags & 1) === 1 ? 1 : 0, v.qos);
    }
    if (v.ack_ids) assert.deepEqual(parseAck(f.body).map(String), v.ack_ids);
    if (v.upstream_type !== undefined) {
      const u = parseUpstream(f.body);
      assert.equal(u.type, v.upstream_type);
      assert.equal(toHex(u.payload), v.payload_hex);
    }
    // The streaming decoder gives the same frame, even a byte at a time.
    const d = new FrameDecoder();
    const bytes = fromHex(v.hex);
    const got = [];
    for (let i = 0; i < bytes.length; i++) got.push(...d.push(bytes.subarray(i, i + 1)));
    assert.equal(got.length, 1);
    assert.equal(toHex(got[0].body), v.body_hex);
    assert.equal(d.buffered, 0);
  });
}

for (const v of frames.malformed) {
  test(`malformed ${v.name}: ${v.error}`, () => {
    const bytes = fromHex(v.hex);
    assert.throws(() => decodeFrame(bytes), (e) => e instanceof ProtocolError && e.code === v.error);
    // The stream decoder refuses it as soon as it has seen enough: a bad Len
    // from the 4 Len bytes alone, before any body.
    const d = new FrameDecoder();
    assert.throws(() => d.push(bytes), (e) => e instanceof ProtocolError && e.code === v.error);
  });
}

test('stream decoder splits back-to-back frames and keeps a partial one', () => {
  const all = frames.frames.map((v) => fromHex(v.hex));
  const joined = new Uint8Array(all.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of all) (joined.set(b, off), (off += b.length));
  const d = new FrameDecoder();
  const got = [...d.push(joined.subarray(0, 40)), ...d.push(joined.subarray(40, joined.length - 3))];
  assert.equal(got.length, all.length - 1);
  got.push(...d.push(joined.subarray(joined.length - 3)));
  assert.deepEqual(got.map((f) => f.op), frames.frames.map((v) => v.op));
});

test('stream decoder bound is configurable and refuses before buffering', () => {
  const d = new FrameDecoder(100);
  assert.throws(() => d.push(fromHex('00000065')), (e) => e.code === 'frame_too_large');
  const ok = new FrameDecoder(100);
  assert.deepEqual(ok.push(fromHex('00000064')), []); // Len 100 is allowed: waits for the body
  assert.equal(ok.buffered, 4);
});

test('decodeFrame rejects trailing or missing bytes', () => {
  const pong = fromHex('0000000c010400000000000200000000');
  assert.throws(() => decodeFrame(pong.subarray(0, 15)), (e) => e.code === 'bad_frame');
  assert.throws(() => decodeFrame(new Uint8Array([...pong, 0])), (e) => e.code === 'bad_frame');
  assert.throws(() => decodeFrame(pong.subarray(0, 2)), (e) => e.code === 'bad_frame');
});

test('ids above 2^53 round-trip as bigint', () => {
  const id = 18446744073709551615n;
  const f = decodeFrame(encodePush(1, id, new Uint8Array(), true));
  assert.equal(parsePush(f.body).id, id);
  assert.equal(f.op, Op.PUSH);
});

for (const v of tokens.tokens) {
  test(`token app=${v.app} uid=${JSON.stringify(v.uid)}`, async () => {
    assert.equal(signTokenSync(v.secret, v.app, v.uid, v.expiry), v.token);
    assert.equal(await signToken(v.secret, v.app, v.uid, v.expiry), v.token);
  });
}
