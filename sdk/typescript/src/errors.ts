/**
 * Every error the SDK hands out. code is the server's ERROR code
 * (bad_token, not_bound, rate_limited, ...) when the server refused
 * something, otherwise one of the SDK's own: closed, disconnected,
 * not_connected, busy, timeout, too_large, config, dispatch, io, kicked,
 * redirected, bad_frame, frame_too_large.
 */
export class LcpushError extends Error {
  /** Set for code "kicked": the KICK code (1..4). */
  kickCode?: number;
  /** Set for code "redirected". */
  redirect?: { addrs: string[]; afterMs: number };
  /** Set when a WebSocket close frame ended the connection. */
  wsCode?: number;

  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'LcpushError';
  }
}

export function asLcpushError(err: unknown, code = 'io'): LcpushError {
  if (err instanceof LcpushError) return err;
  const e = err as { code?: unknown; message?: unknown } | undefined;
  // ProtocolError carries a protocol code; socket errors carry ECONNREFUSED etc.
  if (e && typeof e.code === 'string' && (e.code === 'bad_frame' || e.code === 'frame_too_large')) {
    return new LcpushError(e.code, String(e.message));
  }
  return new LcpushError(code, e && typeof e.message === 'string' ? e.message : String(err));
}
