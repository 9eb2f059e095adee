// Token signing (docs/protocol.md "Tokens"), for tests and back ends:
// token = expiry "." hex(HMAC-SHA256(secret, app "|" uid "|" expiry)).
// Browser-safe: Web Crypto only (present in browsers and Node 20).
import { toHex, utf8 } from './codec.js';

/** The MAC input of a token. */
export function tokenMessage(app: number, uid: string, expiry: number): string {
  return `${app}|${uid}|${expiry}`;
}

/** Signs a token with Web Crypto (crypto.subtle). */
export async function signToken(secret: string, app: number, uid: string, expiry: number): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error('lcpush: crypto.subtle is not available (needs a secure context)');
  // An empty secret is a valid HMAC key, but importKey refuses a zero-length
  // raw key; HMAC pads keys with zeros, so one zero byte is the same key.
  const raw = secret === '' ? new Uint8Array(1) : utf8(secret);
  const key = await subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = await subtle.sign('HMAC', key, utf8(tokenMessage(app, uid, expiry)));
  return `${expiry}.${toHex(new Uint8Array(mac))}`;
}
