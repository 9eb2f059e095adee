package io.lcpush.sdk;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/** A minimal test runner (no JUnit on the classpath): named tests, a summary, exit code 1 on any failure. */
public final class TestRunner {
    interface Body {
        void run() throws Exception;
    }

    private final List<String> names = new ArrayList<>();
    private final List<Body> bodies = new ArrayList<>();

    void add(String name, Body b) {
        names.add(name);
        bodies.add(b);
    }

    public static void main(String[] args) {
        TestRunner r = new TestRunner();
        CodecTest.register(r);
        MiscTest.register(r);
        SessionTest.register(r);
        ClientTest.register(r);
        TlsTest.register(r);
        r.add("no client thread outlives close", () -> { // runs last
            long end = System.currentTimeMillis() + 3000;
            List<String> alive;
            do {
                alive = new ArrayList<>();
                for (Thread t : Thread.getAllStackTraces().keySet())
                    if (t.isAlive() && t.getName().startsWith("lcpush-")) alive.add(t.getName());
                if (alive.isEmpty()) return;
                Thread.sleep(50);
            } while (System.currentTimeMillis() < end);
            throw new AssertionError("threads still running: " + alive);
        });
        String only = args.length > 0 ? args[0] : null;
        int passed = 0, failed = 0;
        for (int i = 0; i < r.names.size(); i++) {
            String n = r.names.get(i);
            if (only != null && !n.contains(only)) continue;
            long t0 = System.nanoTime();
            try {
                r.bodies.get(i).run();
                passed++;
                System.out.printf("PASS %s (%d ms)%n", n, (System.nanoTime() - t0) / 1_000_000);
            } catch (Throwable e) {
                failed++;
                System.out.printf("FAIL %s: %s%n", n, e);
                e.printStackTrace(System.out);
            }
        }
        System.out.printf("%d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 ? 0 : 1);
    }

    // Assertions.

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void eq(Object want, Object got, String what) {
        if (!Objects.equals(want, got)) throw new AssertionError(what + ": got " + got + ", want " + want);
    }

    static Path conformance(String file) {
        String dir = System.getenv("LCPUSH_CONFORMANCE");
        if (dir == null || dir.isEmpty()) dir = "../../conformance";
        return Paths.get(dir, file);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> readJson(String file) throws IOException {
        return (Map<String, Object>) Json.parse(new String(Files.readAllBytes(conformance(file)), StandardCharsets.UTF_8));
    }

    static byte[] hex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x & 0xFF));
        return s.toString();
    }
}
