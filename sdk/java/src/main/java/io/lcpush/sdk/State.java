package io.lcpush.sdk;

/** Connection states reported to Listener.onState; CLOSED comes last, once. */
public enum State {
    CONNECTING, CONNECTED, DISCONNECTED, CLOSED;

    /** The lower-case name used on the wire of the driver protocol and in logs. */
    public String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
