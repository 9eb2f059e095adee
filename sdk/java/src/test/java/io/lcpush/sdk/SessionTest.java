package io.lcpush.sdk;

import static io.lcpush.sdk.TestRunner.eq;
import static io.lcpush.sdk.TestRunner.hex;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * conformance/sessions.json: each script played by a fake server, step for
 * step as pkg/sdk/conformance_test.go plays it against the Go SDK.
 */
final class SessionTest {
    static final int TIMEOUT_MS = 5000; // testkit.Timeout

    private SessionTest() {}

    @SuppressWarnings("unchecked")
    static void register(TestRunner r) {
        Map<String, Object> v;
        try {
            v = TestRunner.readJson("sessions.json");
        } catch (Exception e) {
            r.add("sessions.json", () -> { throw e; });
            return;
        }
        List<Object> scripts = (List<Object>) v.get("sessions");
        r.add("sessions count", () -> TestRunner.check(scripts.size() >= 4, scripts.size() + " scripts"));
        for (Object o : scripts) {
            Map<String, Object> sc = (Map<String, Object>) o;
            r.add("session " + sc.get("name"), () -> play(sc));
        }
    }

    @SuppressWarnings("unchecked")
    static void play(Map<String, Object> sc) throws Exception {
        Map<String, Object> cl = (Map<String, Object>) sc.get("client");
        LinkedBlockingQueue<Message> got = new LinkedBlockingQueue<>();
        try (ServerSocket ln = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
            Config cfg = Config.builder().addr("127.0.0.1:" + ln.getLocalPort()).app((int) Json.num(cl, "app", 0))
                    .uid(Json.str(cl, "uid")).token(Json.str(cl, "token")).heartbeatSeconds((int) Json.num(cl, "hb", 0))
                    .backoff(50, 100).build();
            LcpushClient c = new LcpushClient(cfg, new Listener() {
                @Override public void onMessage(Message m) { got.add(m); }
            });
            try {
                c.connect();
                ln.setSoTimeout(TIMEOUT_MS);
                try (Socket nc = ln.accept()) {
                    steps(sc, ln, nc);
                }
                for (Object o : (List<Object>) sc.getOrDefault("deliver", List.of())) {
                    Map<String, Object> want = (Map<String, Object>) o;
                    Message m = got.poll(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                    if (m == null) throw new AssertionError("message " + want.get("id") + " not delivered");
                    eq(Json.str(want, "id"), Long.toUnsignedString(m.id), "delivered id");
                    eq(Json.str(want, "payload_hex"), hex(m.payload), "delivered payload");
                    eq((int) Json.num(want, "qos", -1), m.qos, "delivered qos");
                }
            } finally {
                c.close();
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static void steps(Map<String, Object> sc, ServerSocket ln, Socket nc) throws Exception {
        InputStream in = nc.getInputStream();
        int lastSeq = 0;
        List<Object> steps = (List<Object>) sc.get("steps");
        for (int i = 0; i < steps.size(); i++) {
            Map<String, Object> st = (Map<String, Object>) steps.get(i);
            List<Long> skip = new ArrayList<>();
            for (Object o : (List<Object>) st.getOrDefault("skip", List.of())) skip.add((Long) o);
            switch (Json.str(st, "do")) {
                case "send": {
                    byte[] b = hex(Json.str(st, "hex"));
                    if (Json.bool(st, "reply")) Frame.putU32(b, 8, lastSeq);
                    nc.getOutputStream().write(b);
                    break;
                }
                case "expect": {
                    int within = (int) Json.num(st, "within_ms", 0);
                    nc.setSoTimeout(within > 0 ? within : TIMEOUT_MS);
                    Frame f;
                    while (true) {
                        try {
                            f = Frame.read(in, 1 << 20);
                        } catch (IOException e) {
                            throw new AssertionError("step " + i + ": want op " + st.get("op") + ": " + e);
                        }
                        if (!skip.contains((long) f.op)) break;
                    }
                    eq((int) Json.num(st, "op", -1), f.op, "step " + i + " op");
                    if (st.containsKey("app")) eq((int) Json.num(st, "app", -1), f.app, "step " + i + " app");
                    lastSeq = f.seq;
                    if (st.get("json") instanceof Map) {
                        Map<String, Object> body = Frame.jsonBody(f.body);
                        for (Map.Entry<String, Object> e : ((Map<String, Object>) st.get("json")).entrySet())
                            eq(e.getValue(), body.get(e.getKey()), "step " + i + " body " + e.getKey());
                    }
                    if (st.get("ack_ids") != null) {
                        List<String> ids = new ArrayList<>();
                        for (long id : Frame.ackIds(f.body)) ids.add(Long.toUnsignedString(id));
                        eq(st.get("ack_ids"), ids, "step " + i + " ack ids");
                    }
                    break;
                }
                case "expect_close": {
                    nc.setSoTimeout(TIMEOUT_MS);
                    while (true) {
                        Frame f;
                        try {
                            f = Frame.read(in, 1 << 20);
                        } catch (SocketTimeoutException e) {
                            throw new AssertionError("step " + i + ": the client kept the connection open");
                        } catch (IOException e) {
                            break;
                        }
                        if (!skip.contains((long) f.op)) throw new AssertionError("step " + i + ": got op " + f.op + ", want the client to close");
                    }
                    ln.setSoTimeout((int) Json.num(st, "quiet_ms", 0));
                    try {
                        ln.accept().close();
                        throw new AssertionError("step " + i + ": the client came back");
                    } catch (SocketTimeoutException expected) {
                        // stayed away
                    }
                    break;
                }
                default:
                    throw new AssertionError("step " + i + ": unknown step " + st.get("do"));
            }
        }
    }
}
