package io.lcpush.sdk;

/**
 * A failed request or connection. code is the server's error code
 * (bad_token, not_bound, rate_limited, ...) or one of the SDK's: closed,
 * not_connected, disconnected, busy, timeout, too_large.
 */
public final class LcpushException extends Exception {
    private static final long serialVersionUID = 1L;
    private final String code;
    private final boolean fromServer;

    public LcpushException(String code, String message) {
        this(code, message, false);
    }

    LcpushException(String code, String message, boolean fromServer) {
        super(message == null || message.isEmpty() ? code : code + ": " + message);
        this.code = code;
        this.fromServer = fromServer;
    }

    /** True when the code came in a server ERROR frame. */
    public boolean fromServer() {
        return fromServer;
    }

    public String code() {
        return code;
    }
}
