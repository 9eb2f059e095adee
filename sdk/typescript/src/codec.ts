// Wire codec of docs/protocol.md: a 16-byte big-endian header
// (Len, Ver, Op, Flags, Seq, App) followed by the body.

export const VERSION = 1;
export const HEADER_SIZE = 16;
/** Smallest legal Len: the 12 header bytes after the Len field. */
export const MIN_LEN = 12;
/** The server's default maximum Len (a 64 KiB body). */
export const DEFAULT_MAX_LEN = 65548;

export const Op = {
  AUTH: 0x01,
  AUTH_OK: 0x02,
  PING: 0x03,
  PONG: 0x04,
  PUSH: 0x05,
  ACK: 0x06,
  UPSTREAM: 0x07,
  UPSTREAM_OK: 0x08,
  BIND: 0x09,
  BIND_OK: 0x0a,
  UNBIND: 0x0b,
  UNBIND_OK: 0x0c,
  KICK: 0x0d,
  REDIRECT: 0x0e,
  ERROR: 0x0f,
} as const;

export const FLAG_ACK_REQUIRED = 1;
export const FLAG_REPLY_WANTED = 2;

const U64_MAX = (1n << 64n) - 1n;

export interface Frame {
  op: number;
  flags: number;
  seq: number;
  app: number;
  body: Uint8Array;
}

/** A frame that breaks the protocol; code is the ERROR code a server answers. */
export class ProtocolError extends Error {
  constructor(readonly code: 'bad_frame' | 'frame_too_large', message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });

export function utf8(s: string): Uint8Array<ArrayBuffer> {
  return enc.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return dec.decode(b);
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || /[^0-9a-f]/i.test(h)) throw new Error('bad hex');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A message id as bigint, from a bigint, a safe integer or a decimal string. */
export function toId(v: bigint | number | string): bigint {
  const id = typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : /^[0-9]+$/.test(v) ? BigInt(v) : NaN;
  if (typeof id !== 'bigint' || id < 0n || id > U64_MAX) throw new RangeError(`not a u64 message id: ${String(v)}`);
  return id;
}

export interface FrameHeader {
  op: number;
  flags?: number;
  seq?: number;
  app?: number;
}

export function encodeFrame(h: FrameHeader, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, MIN_LEN + body.length);
  v.setUint8(4, VERSION);
  v.setUint8(5, h.op);
  v.setUint16(6, h.flags ?? 0);
  v.setUint32(8, h.seq ?? 0);
  v.setUint32(12, h.app ?? 0);
  out.set(body, HEADER_SIZE);
  return out;
}

export function encodeJSON(h: FrameHeader, value: unknown): Uint8Array {
  return encodeFrame(h, utf8(JSON.stringify(value)));
}

export function encodePush(app: number, id: bigint, payload: Uint8Array, qos1: boolean): Uint8Array {
  const body = new Uint8Array(8 + payload.length);
  new DataView(body.buffer).setBigUint64(0, id);
  body.set(payload, 8);
  return encodeFrame({ op: Op.PUSH, flags: qos1 ? FLAG_ACK_REQUIRED : 0, app }, body);
}

export function encodeAck(ids: readonly bigint[], seq = 0, app = 0): Uint8Array {
  if (ids.length > 0xffff) throw new RangeError('too many ids in one ACK');
  const body = new Uint8Array(2 + 8 * ids.length);
  const v = new DataView(body.buffer);
  v.setUint16(0, ids.length);
  ids.forEach((id, i) => v.setBigUint64(2 + 8 * i, id));
  return encodeFrame({ op: Op.ACK, seq, app }, body);
}

export function encodeUpstream(seq: number, app: number, type: number, payload: Uint8Array, reply: boolean): Uint8Array {
  const body = new Uint8Array(2 + payload.length);
  new DataView(body.buffer).setUint16(0, type);
  body.set(payload, 2);
  return encodeFrame({ op: Op.UPSTREAM, flags: reply ? FLAG_REPLY_WANTED : 0, seq, app }, body);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Checks a Len field against the bounds, before anything is buffered. */
export function checkLen(len: number, maxLen: number): void {
  if (len < MIN_LEN) throw new ProtocolError('bad_frame', `Len ${len} < ${MIN_LEN}`);
  if (len > maxLen) throw new ProtocolError('frame_too_large', `Len ${len} > ${maxLen}`);
}

/**
 * Decodes exactly one whole frame (a WebSocket message, a test vector).
 * Bodies of PUSH, ACK and UPSTREAM are checked for their shape too.
 */
export function decodeFrame(b: Uint8Array, maxLen = DEFAULT_MAX_LEN): Frame {
  if (b.length < 4) throw new ProtocolError('bad_frame', 'shorter than the Len field');
  const v = view(b);
  const len = v.getUint32(0);
  checkLen(len, maxLen);
  if (b.length !== len + 4) throw new ProtocolError('bad_frame', `Len ${len} but ${b.length - 4} bytes`);
  if (v.getUint8(4) !== VERSION) throw new ProtocolError('bad_frame', `version ${v.getUint8(4)}`);
  const f: Frame = {
    op: v.getUint8(5),
    flags: v.getUint16(6),
    seq: v.getUint32(8),
    app: v.getUint32(12),
    body: b.subarray(HEADER_SIZE),
  };
  checkBody(f);
  return f;
}

function checkBody(f: Frame): void {
  switch (f.op) {
    case Op.PUSH:
      parsePush(f.body);
      break;
    case Op.ACK:
      parseAck(f.body);
      break;
    case Op.UPSTREAM:
      parseUpstream(f.body);
      break;
  }
}

export function parsePush(body: Uint8Array): { id: bigint; payload: Uint8Array } {
  if (body.length < 8) throw new ProtocolError('bad_frame', 'PUSH body shorter than its MsgID');
  return { id: view(body).getBigUint64(0), payload: body.subarray(8) };
}

export function parseAck(body: Uint8Array): bigint[] {
  if (body.length < 2) throw new ProtocolError('bad_frame', 'ACK without Count');
  const v = view(body);
  const n = v.getUint16(0);
  if (body.length !== 2 + 8 * n) throw new ProtocolError('bad_frame', `ACK Count ${n} with ${body.length - 2} id bytes`);
  const ids: bigint[] = [];
  for (let i = 0; i < n; i++) ids.push(v.getBigUint64(2 + 8 * i));
  return ids;
}

export function parseUpstream(body: Uint8Array): { type: number; payload: Uint8Array } {
  if (body.length < 2) throw new ProtocolError('bad_frame', 'UPSTREAM without Type');
  return { type: view(body).getUint16(0), payload: body.subarray(2) };
}

/** Parses a JSON body; a body that is not a JSON object is bad_frame. */
export function parseJSON<T = Record<string, unknown>>(body: Uint8Array): T {
  let v: unknown;
  try {
    v = JSON.parse(fromUtf8(body));
  } catch {
    throw new ProtocolError('bad_frame', 'body is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ProtocolError('bad_frame', 'body is not a JSON object');
  return v as T;
}

/**
 * Splits a byte stream (raw TCP, TLS) into frames. It refuses a Len out of
 * bounds from the 4 Len bytes alone, so a peer cannot make it buffer what it
 * announces. After an error the decoder is unusable: drop the connection.
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  constructor(private readonly maxLen = DEFAULT_MAX_LEN) {}

  /** Appends chunk and returns every whole frame it completes. */
  push(chunk: Uint8Array): Frame[] {
    let buf = chunk;
    if (this.buf.length > 0) {
      buf = new Uint8Array(this.buf.length + chunk.length);
      buf.set(this.buf);
      buf.set(chunk, this.buf.length);
    }
    const out: Frame[] = [];
    let off = 0;
    while (buf.length - off >= 4) {
      const len = view(buf).getUint32(off);
      checkLen(len, this.maxLen);
      if (buf.length - off < 4 + len) break;
      // Copy: the caller may keep the frame, the chunk belongs to the socket.
      out.push(decodeFrame(buf.slice(off, off + 4 + len), this.maxLen));
      off += 4 + len;
    }
    this.buf = off === buf.length ? new Uint8Array(0) : buf.slice(off);
    return out;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.buf.length;
  }
}
