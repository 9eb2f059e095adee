package io.lcpush.sdk;

import static io.lcpush.sdk.TestRunner.check;
import static io.lcpush.sdk.TestRunner.eq;

import java.io.IOException;
import java.math.BigInteger;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.cert.Certificate;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;

/** Backoff, dedup, the JSON reader/writer, addresses, config checks and pins. */
final class MiscTest {
    private MiscTest() {}

    static void register(TestRunner r) {
        r.add("backoff bounds", () -> {
            for (int attempt = 0; attempt < 40; attempt++) {
                long ceil = Math.min(30_000, 500L << Math.min(attempt, 20));
                long maxSeen = 0;
                for (int i = 0; i < 2000; i++) {
                    long d = LcpushClient.backoff(500, 30_000, attempt);
                    check(d >= 0 && d <= ceil, "attempt " + attempt + ": " + d + " outside [0," + ceil + "]");
                    maxSeen = Math.max(maxSeen, d);
                }
                check(maxSeen > ceil / 2, "attempt " + attempt + ": jitter never reached the upper half (" + maxSeen + ")");
            }
            eq(0L, LcpushClient.backoff(0, 0, 5), "zero bounds");
        });
        r.add("dedup window", () -> {
            Dedup d = new Dedup(4);
            check(d.add(1) == null, "1 is new");
            check(d.add(2) == null, "2 is new");
            eq(Boolean.FALSE, d.add(1), "1 is a duplicate, not acked");
            d.markAcked(new long[] {1, 99});
            eq(Boolean.TRUE, d.add(1), "1 is acked");
            check(d.add(-1L) == null, "u64 max is new");
            check(d.add(3) == null && d.add(4) == null, "3, 4 new");
            eq(4, d.size(), "bounded");
            check(d.add(1) == null, "1 fell out of the window");
            eq(Boolean.FALSE, d.add(-1L), "u64 max still remembered");
            eq(4, d.size(), "still bounded");
            d.markAcked(new long[] {99});
            check(d.add(99) == null, "acking an unseen id does not remember it");
        });
        r.add("json tricky input", () -> {
            Object v = Json.parse(" {\"a\" : [1, -2, 3.5e2, true, false, null, {\"b\":{\"c\":[[]]}}],"
                    + "\"s\":\"q\\\"b\\\\s\\/n\\n\\t\\r\\b\\f\\u00e9\\u4e2d\\ud83d\\ude00\","
                    + "\"raw\":\"ünï ✓ 😀\", \"big\": 18446744073709551615, \"neg\": -9223372036854775808,"
                    + "\"huge\": 123456789012345678901234567890, \"zero\":0, \"f\": -0.5, \"e\":\"\"} ");
            @SuppressWarnings("unchecked") Map<String, Object> m = (Map<String, Object>) v;
            eq(Arrays.asList(1L, -2L, 350.0, true, false, null, Map.of("b", Map.of("c", List.of(List.of())))), m.get("a"), "array");
            eq("q\"b\\s/n\n\t\r\b\f\u00e9\u4e2d\ud83d\ude00", m.get("s"), "escapes");
            eq("ünï ✓ 😀", m.get("raw"), "raw unicode");
            eq(new BigInteger("18446744073709551615"), m.get("big"), "u64 max is a BigInteger");
            eq(Long.MIN_VALUE, m.get("neg"), "i64 min is a Long");
            eq(new BigInteger("123456789012345678901234567890"), m.get("huge"), "huge");
            eq(0L, m.get("zero"), "zero");
            eq(-0.5, m.get("f"), "fraction");
            eq("", m.get("e"), "empty string");
            // Round trip through the writer.
            eq(m, Json.parse(Json.write(m)), "round trip");
            eq("{\"k\":\"a\\\"\\\\\\n\\u0001\\u2028é\"}", Json.write(Map.of("k", "a\"\\\n\u0001\u2028é")), "writer escapes");
            for (String bad : new String[] {"", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"\\u12\"", "tru",
                    "{\"a\" 1}", "[1] 2", "\"a\u0001\"", "{a:1}", "nul", "1e", "[" .repeat(100) + "]".repeat(100)}) {
                try {
                    Json.parse(bad);
                    throw new AssertionError("accepted " + bad);
                } catch (IllegalArgumentException expected) {
                    // ok
                }
            }
        });
        r.add("u64 ids and base64 without API 26", () -> {
            java.util.Random rnd = new java.util.Random(1);
            long[] edge = {0, 1, 9, 10, Long.MAX_VALUE, Long.MIN_VALUE, -1, -10, -11};
            for (int i = 0; i < 10000; i++) {
                long v = i < edge.length ? edge[i] : rnd.nextLong();
                eq(Long.toUnsignedString(v), Message.idString(v), "idString");
                eq(v, Message.parseId(Long.toUnsignedString(v)), "parseId");
            }
            for (String bad : new String[] {"-1", "18446744073709551616", "x"}) {
                try {
                    Message.parseId(bad);
                    throw new AssertionError("parsed " + bad);
                } catch (NumberFormatException expected) {
                    // ok
                }
            }
            for (int n = 0; n < 70; n++) {
                byte[] b = new byte[n];
                rnd.nextBytes(b);
                eq(Base64.getEncoder().encodeToString(b), Conn.base64(b), "base64 of " + n + " bytes");
            }
            for (int i = 0; i < 200; i++) { // every real pin passes the config check
                byte[] h = new byte[32];
                rnd.nextBytes(h);
                Config.builder().addr("h:1").uid("u").token("t").transport("tls").pin("sha256/" + Base64.getEncoder().encodeToString(h)).build();
            }
        });
        r.add("endpoint parse", () -> {
            Endpoint e = Endpoint.parse("127.0.0.1:7000", "tcp");
            check(e.host.equals("127.0.0.1") && e.port == 7000 && !e.tls, "tcp");
            check(Endpoint.parse("tls://h.example:443", "tcp").tls, "tls scheme");
            check(!Endpoint.parse("tcp://h:1", "tls").tls, "tcp scheme");
            check(Endpoint.parse("h:1", "tls").tls, "default tls");
            eq("::1", Endpoint.parse("[::1]:7000", "tcp").host, "v6");
            eq("h:1", Endpoint.hostPort("tls://h:1"), "hostPort");
            for (String bad : new String[] {"h", ":1", "h:0", "h:x", "ws://h:1/v1/ws", "h:70000"}) {
                try {
                    Endpoint.parse(bad, "tcp");
                    throw new AssertionError("accepted " + bad);
                } catch (IllegalArgumentException expected) {
                    // ok
                }
            }
        });
        r.add("config validation", () -> {
            Config c = Config.builder().addr("h:1").uid("u").token("t").build();
            eq(500L, c.backoffMinMs, "backoff min");
            eq(30_000L, c.backoffMaxMs, "backoff max");
            eq(1024, c.dedupWindow, "dedup");
            for (Config.Builder b : List.of(Config.builder().addr("h:1").token("t"), Config.builder().addr("h:1").uid("u"),
                    Config.builder().uid("u").token("t"), Config.builder().addr("h:1").uid("u").token("t").transport("ws"),
                    Config.builder().addr("h:1").uid("u").token("t").pin("sha256/" + Base64.getEncoder().encodeToString(new byte[32])),
                    Config.builder().addr("h:1").uid("u").token("t").transport("tls").pin("sha1/abc"),
                    Config.builder().dispatch("ftp://x").uid("u").token("t"))) {
                try {
                    b.build();
                    throw new AssertionError("accepted a bad config");
                } catch (IllegalArgumentException expected) {
                    // ok
                }
            }
        });
        r.add("pins", () -> {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(256);
            PublicKey k1 = g.generateKeyPair().getPublic(), k2 = g.generateKeyPair().getPublic();
            Certificate leaf = fakeCert(k1), root = fakeCert(k2);
            String pin = "sha256/" + Base64.getEncoder().encodeToString(MessageDigest.getInstance("SHA-256").digest(k2.getEncoded()));
            eq(pin, Conn.pinOf(root), "pinOf");
            Conn.checkPins(new Certificate[] {leaf, root}, List.of(pin), "h"); // a chain certificate matches
            try {
                Conn.checkPins(new Certificate[] {leaf}, List.of(pin), "h");
                throw new AssertionError("a chain without the pinned key passed");
            } catch (IOException expected) {
                check(expected.getMessage().contains("matches no pin"), expected.getMessage());
            }
        });
    }

    private static Certificate fakeCert(PublicKey k) {
        return new Certificate("X.509") {
            @Override public byte[] getEncoded() { return k.getEncoded(); }
            @Override public void verify(PublicKey key) {}
            @Override public void verify(PublicKey key, String sigProvider) {}
            @Override public String toString() { return "fake"; }
            @Override public PublicKey getPublicKey() { return k; }
        };
    }
}
