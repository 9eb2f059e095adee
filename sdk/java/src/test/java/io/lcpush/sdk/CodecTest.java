package io.lcpush.sdk;

import static io.lcpush.sdk.TestRunner.check;
import static io.lcpush.sdk.TestRunner.eq;
import static io.lcpush.sdk.TestRunner.hex;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** conformance/frames.json and tokens.json. */
final class CodecTest {
    private CodecTest() {}

    @SuppressWarnings("unchecked")
    static void register(TestRunner r) {
        Map<String, Object> v;
        Map<String, Object> tokens;
        try {
            v = TestRunner.readJson("frames.json");
            tokens = TestRunner.readJson("tokens.json");
        } catch (Exception e) {
            r.add("conformance files", () -> { throw e; });
            return;
        }
        int max = (int) Json.num(v, "max_len", 0);
        r.add("frames max_len", () -> eq(Frame.DEFAULT_MAX_LEN, max, "max_len"));
        for (Object o : (List<Object>) v.get("frames")) {
            Map<String, Object> f = (Map<String, Object>) o;
            r.add("frame " + f.get("name"), () -> frame(f, max));
        }
        for (Object o : (List<Object>) v.get("malformed")) {
            Map<String, Object> f = (Map<String, Object>) o;
            r.add("malformed " + f.get("name"), () -> malformed(f, max));
        }
        for (Object o : (List<Object>) tokens.get("tokens")) {
            Map<String, Object> t = (Map<String, Object>) o;
            r.add("token " + t.get("uid"), () -> eq(Json.str(t, "token"),
                    Tokens.sign(Json.str(t, "secret"), (int) Json.num(t, "app", 0), Json.str(t, "uid"), Json.num(t, "expiry", 0)),
                    "token"));
        }
        r.add("frame truncated body is EOF", () -> {
            try {
                Frame.read(new ByteArrayInputStream(hex("0000000c0103")), max);
                throw new AssertionError("read a truncated frame");
            } catch (EOFException expected) {
                // ok
            }
        });
    }

    @SuppressWarnings("unchecked")
    private static void frame(Map<String, Object> v, int max) throws Exception {
        String hx = Json.str(v, "hex");
        byte[] body = hex(Json.str(v, "body_hex"));
        int op = (int) Json.num(v, "op", -1), seq = (int) Json.num(v, "seq", -1), app = (int) Json.num(v, "app", -1);
        int flags = (int) Json.num(v, "flags", -1);
        // Encode from the fields.
        eq(hx, hex(new Frame(op, flags, seq, app, body).encode()), "encode");
        // Decode gives the fields.
        Frame f = Frame.read(new ByteArrayInputStream(hex(hx)), max);
        eq(op, f.op, "op");
        eq(seq, f.seq, "seq");
        eq(app, f.app, "app");
        eq(flags, f.flags, "flags");
        eq(Json.str(v, "body_hex"), hex(f.body), "body");
        if (v.get("json") instanceof Map) {
            Map<String, Object> want = (Map<String, Object>) v.get("json");
            Map<String, Object> got = Frame.jsonBody(f.body);
            eq(want, got, "json body");
            // The writer gives back the same bytes (key order kept).
            eq(new String(body, StandardCharsets.UTF_8), Json.write(got), "json rewrite");
        }
        if (v.containsKey("msg_id")) {
            eq(Json.str(v, "msg_id"), Long.toUnsignedString(Frame.pushId(f.body)), "msg_id");
            eq(Json.str(v, "payload_hex"), hex(Frame.pushPayload(f.body)), "payload");
            eq((int) Json.num(v, "qos", -1), f.flags & Frame.FLAG_ACK_REQUIRED, "qos");
            long id = Long.parseUnsignedLong(Json.str(v, "msg_id"));
            eq(hx, hex(Frame.push(app, id, (f.flags & 1) != 0, hex(Json.str(v, "payload_hex"))).encode()), "push encode");
        }
        if (v.containsKey("ack_ids")) {
            List<String> got = new ArrayList<>();
            for (long id : Frame.ackIds(f.body)) got.add(Long.toUnsignedString(id));
            eq(v.get("ack_ids"), got, "ack ids");
            List<Object> want = (List<Object>) v.get("ack_ids");
            long[] ids = new long[want.size()];
            for (int i = 0; i < ids.length; i++) ids[i] = Long.parseUnsignedLong((String) want.get(i));
            eq(hx, hex(Frame.ack(seq, app, ids, 0, ids.length).encode()), "ack encode");
        }
        if (v.containsKey("upstream_type")) {
            eq((int) Json.num(v, "upstream_type", -1), Frame.upstreamType(f.body), "upstream type");
            eq(hx, hex(Frame.upstream(seq, app, (flags & 2) != 0, Frame.upstreamType(f.body), hex(Json.str(v, "payload_hex"))).encode()),
                    "upstream encode");
        }
    }

    private static void malformed(Map<String, Object> v, int max) throws Exception {
        String want = Json.str(v, "error");
        try {
            Frame f = Frame.read(new ByteArrayInputStream(hex(Json.str(v, "hex"))), max);
            // The header parsed: the body must be refused by its op's parser.
            if (f.op == Frame.PUSH) Frame.pushId(f.body);
            else if (f.op == Frame.ACK) Frame.ackIds(f.body);
            else if (f.op == Frame.UPSTREAM) Frame.upstreamType(f.body);
            throw new AssertionError("accepted " + v.get("name"));
        } catch (Frame.ProtocolException e) {
            eq(want, e.code, "error code");
        }
        check(true, "");
    }
}
