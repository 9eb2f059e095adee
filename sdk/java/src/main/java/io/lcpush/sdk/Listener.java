package io.lcpush.sdk;

import java.util.List;

/**
 * Client events. Every method runs on the client's reader thread, one at a
 * time, in the order the connection produced them; a slow method slows the
 * reading (TCP then pushes back on the server). Methods may call ack() and
 * close(); they must not block waiting on a bind/unbind/upstream future,
 * whose reply the same thread would have to read.
 */
public interface Listener {
    /**
     * A state change. addr is the gateway address for CONNECTING and
     * CONNECTED; code and reason say why for DISCONNECTED and CLOSED (a kick
     * code, or 0 with a text such as "bad_token" or "read timeout").
     */
    default void onState(State state, int code, String reason, String addr) {}

    /** A new message (after dedup). In automatic ACK mode it is ACKed after this returns. */
    default void onMessage(Message m) {}

    /** A KICK; codes 1, 2, 3 are final (CLOSED follows), 4 reconnects. */
    default void onKicked(int code, String reason) {}

    /** A REDIRECT, before the client follows it. */
    default void onRedirected(List<String> addrs, int afterMs) {}

    /** A server ERROR that answered no request, or an SDK problem (code "connect_failed", "dispatch_failed", "token_provider", ...). */
    default void onError(String code, String message) {}
}
