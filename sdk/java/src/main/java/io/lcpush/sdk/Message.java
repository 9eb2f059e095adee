package io.lcpush.sdk;

/** One pushed message. id is a u64 kept in a long: print it with {@link #idString(long)}. */
public final class Message {
    public final int app;
    public final long id;
    /** 1 when the server wants an ACK (stored message), else 0. */
    public final int qos;
    public final byte[] payload;

    public Message(int app, long id, int qos, byte[] payload) {
        this.app = app;
        this.id = id;
        this.qos = qos;
        this.payload = payload;
    }

    /** The decimal form of a u64 id (Long.toUnsignedString, which Android has only from API 26). */
    public static String idString(long id) {
        if (id >= 0) return Long.toString(id);
        long q = (id >>> 1) / 5; // id / 10, unsigned
        return Long.toString(q) + (id - q * 10);
    }

    /** Parses a decimal u64 id (the inverse of idString). */
    public static long parseId(String s) {
        java.math.BigInteger v = new java.math.BigInteger(s);
        if (v.signum() < 0 || v.bitLength() > 64) throw new NumberFormatException("not a u64: " + s);
        return v.longValue();
    }

    @Override
    public String toString() {
        return "Message{app=" + (app & 0xFFFFFFFFL) + ", id=" + idString(id) + ", qos=" + qos
                + ", " + payload.length + " bytes}";
    }
}
