package io.lcpush.sdk;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * One protocol frame (docs/protocol.md, "Framing"): a 16-byte big-endian header
 * (Len, Ver, Op, Flags, Seq, App) and a body. Seq and App are u32 kept in an
 * int; read them as {@code x & 0xFFFFFFFFL} when they may exceed 2^31.
 */
public final class Frame {
    public static final int VERSION = 1;
    public static final int HEADER = 16;
    /** Len counts the 12 header bytes after the Len field. */
    public static final int MIN_LEN = 12;
    /** The server's default maximum Len: a 64 KiB body. */
    public static final int DEFAULT_MAX_LEN = 65548;

    public static final int AUTH = 0x01, AUTH_OK = 0x02, PING = 0x03, PONG = 0x04, PUSH = 0x05, ACK = 0x06,
            UPSTREAM = 0x07, UPSTREAM_OK = 0x08, BIND = 0x09, BIND_OK = 0x0A, UNBIND = 0x0B, UNBIND_OK = 0x0C,
            KICK = 0x0D, REDIRECT = 0x0E, ERROR = 0x0F;
    public static final int FLAG_ACK_REQUIRED = 1, FLAG_REPLY_WANTED = 2;

    public final int op, flags, seq, app;
    public final byte[] body;

    public Frame(int op, int flags, int seq, int app, byte[] body) {
        this.op = op;
        this.flags = flags & 0xFFFF;
        this.seq = seq;
        this.app = app;
        this.body = body == null ? new byte[0] : body;
    }

    public byte[] encode() {
        int len = MIN_LEN + body.length;
        byte[] b = new byte[4 + len];
        putU32(b, 0, len);
        b[4] = VERSION;
        b[5] = (byte) op;
        b[6] = (byte) (flags >>> 8);
        b[7] = (byte) flags;
        putU32(b, 8, seq);
        putU32(b, 12, app);
        System.arraycopy(body, 0, b, HEADER, body.length);
        return b;
    }

    /**
     * Reads one frame. Len is checked against maxLen before anything is
     * buffered, so a peer cannot make us allocate what it announces. A clean
     * end of stream before a frame starts, or inside one, is an EOFException.
     */
    public static Frame read(InputStream in, int maxLen) throws IOException {
        byte[] h = new byte[4];
        readFully(in, h, 4);
        long len = u32(h, 0);
        if (len < MIN_LEN) throw new ProtocolException("bad_frame", "Len " + len + " < 12");
        if (len > maxLen) throw new ProtocolException("frame_too_large", "Len " + len + " > " + maxLen);
        byte[] rest = new byte[(int) len];
        readFully(in, rest, rest.length);
        if (rest[0] != VERSION) throw new ProtocolException("bad_frame", "version " + (rest[0] & 0xFF));
        byte[] body = new byte[rest.length - MIN_LEN];
        System.arraycopy(rest, MIN_LEN, body, 0, body.length);
        return new Frame(rest[1] & 0xFF, ((rest[2] & 0xFF) << 8) | (rest[3] & 0xFF), (int) u32(rest, 4),
                (int) u32(rest, 8), body);
    }

    private static void readFully(InputStream in, byte[] b, int n) throws IOException {
        for (int off = 0; off < n; ) {
            int r = in.read(b, off, n - off);
            if (r < 0) throw new EOFException("connection closed");
            off += r;
        }
    }

    // Bodies.

    /** PUSH body: MsgID u64 then payload. Returns the id; payload via pushPayload. */
    public static long pushId(byte[] body) throws ProtocolException {
        if (body.length < 8) throw new ProtocolException("bad_frame", "PUSH body of " + body.length + " bytes");
        return u64(body, 0);
    }

    public static byte[] pushPayload(byte[] body) {
        byte[] p = new byte[Math.max(0, body.length - 8)];
        System.arraycopy(body, 8, p, 0, p.length);
        return p;
    }

    public static Frame push(int app, long id, boolean qos1, byte[] payload) {
        byte[] b = new byte[8 + payload.length];
        putU64(b, 0, id);
        System.arraycopy(payload, 0, b, 8, payload.length);
        return new Frame(PUSH, qos1 ? FLAG_ACK_REQUIRED : 0, 0, app, b);
    }

    /** ACK body: Count u16 then Count ids. */
    public static Frame ack(int seq, int app, long[] ids, int off, int n) {
        byte[] b = new byte[2 + 8 * n];
        b[0] = (byte) (n >>> 8);
        b[1] = (byte) n;
        for (int i = 0; i < n; i++) putU64(b, 2 + 8 * i, ids[off + i]);
        return new Frame(ACK, 0, seq, app, b);
    }

    public static long[] ackIds(byte[] body) throws ProtocolException {
        if (body.length < 2) throw new ProtocolException("bad_frame", "ACK body too short");
        int n = ((body[0] & 0xFF) << 8) | (body[1] & 0xFF);
        if (body.length != 2 + 8 * n) throw new ProtocolException("bad_frame", "ACK count " + n + " for " + body.length + " bytes");
        long[] ids = new long[n];
        for (int i = 0; i < n; i++) ids[i] = u64(body, 2 + 8 * i);
        return ids;
    }

    public static Frame upstream(int seq, int app, boolean reply, int type, byte[] payload) {
        byte[] b = new byte[2 + payload.length];
        b[0] = (byte) (type >>> 8);
        b[1] = (byte) type;
        System.arraycopy(payload, 0, b, 2, payload.length);
        return new Frame(UPSTREAM, reply ? FLAG_REPLY_WANTED : 0, seq, app, b);
    }

    public static int upstreamType(byte[] body) throws ProtocolException {
        if (body.length < 2) throw new ProtocolException("bad_frame", "UPSTREAM body too short");
        return ((body[0] & 0xFF) << 8) | (body[1] & 0xFF);
    }

    static Frame json(int op, int seq, int app, Map<String, Object> body) {
        return new Frame(op, 0, seq, app, Json.write(body).getBytes(StandardCharsets.UTF_8));
    }

    /** Parses a JSON object body; a body that is not an object is bad_frame. */
    static Map<String, Object> jsonBody(byte[] body) throws ProtocolException {
        try {
            Object v = Json.parse(new String(body, StandardCharsets.UTF_8));
            if (v instanceof Map) {
                @SuppressWarnings("unchecked") Map<String, Object> m = (Map<String, Object>) v;
                return m;
            }
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("bad_frame", "JSON body: " + e.getMessage());
        }
        throw new ProtocolException("bad_frame", "JSON body is not an object");
    }

    static long u32(byte[] b, int o) {
        return ((b[o] & 0xFFL) << 24) | ((b[o + 1] & 0xFFL) << 16) | ((b[o + 2] & 0xFFL) << 8) | (b[o + 3] & 0xFFL);
    }

    static long u64(byte[] b, int o) {
        return (u32(b, o) << 32) | u32(b, o + 4);
    }

    static void putU32(byte[] b, int o, int v) {
        b[o] = (byte) (v >>> 24);
        b[o + 1] = (byte) (v >>> 16);
        b[o + 2] = (byte) (v >>> 8);
        b[o + 3] = (byte) v;
    }

    static void putU64(byte[] b, int o, long v) {
        putU32(b, o, (int) (v >>> 32));
        putU32(b, o + 4, (int) v);
    }

    /** A malformed frame or body; code is the protocol's error code (bad_frame, frame_too_large). */
    public static final class ProtocolException extends IOException {
        private static final long serialVersionUID = 1L;
        public final String code;

        public ProtocolException(String code, String message) {
            super(code + ": " + message);
            this.code = code;
        }
    }
}
