// Browser-safe entry: no runtime dependency, no node: import in this graph.
// The transport is WebSocket on globalThis.WebSocket.
import { ClientBase, type ClientOptions } from './client.js';
import { browserDialer } from './transport.js';

export * from './codec.js';
export * from './errors.js';
export * from './token.js';
export { Dedup, backoff } from './util.js';
export { Emitter } from './emitter.js';
export { ClientBase, SDK_NAME } from './client.js';
export type { ClientOptions, ClientEvents, Message, State, StateEvent } from './client.js';
export { parseAddr, dialWebSocket, browserDialer, WS_PATH, WS_SUBPROTOCOL, TRANSPORTS } from './transport.js';
export type { Conn, ConnHandlers, Dialer, DialOptions, Endpoint, TlsOptions, TransportName, WebSocketLike } from './transport.js';

/** The client for browsers: WebSocket transport (ws:// and wss:// addresses; transport defaults to "ws"). */
export class Client extends ClientBase {
  constructor(options: ClientOptions) {
    super({ dialer: browserDialer, ...options, transport: options.transport ?? 'ws' });
  }
}
