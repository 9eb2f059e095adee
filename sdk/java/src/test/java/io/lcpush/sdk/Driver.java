package io.lcpush.sdk;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The SDK driver of conformance/driver.md: JSON-line commands on stdin,
 * JSON-line events on stdout (one synchronized println per line), logs on
 * stderr. Run from the module root:
 * {@code java -cp sdk/java/build/classes:sdk/java/build/test-classes io.lcpush.sdk.Driver}.
 */
public final class Driver {
    private static final PrintStream OUT = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    private final Map<String, Client> clients = new ConcurrentHashMap<>();

    private static final class Client {
        LcpushClient c;
        final CountDownLatch closed = new CountDownLatch(1);
    }

    public static void main(String[] args) throws IOException {
        System.setOut(System.err); // nothing but events may reach the real stdout
        new Driver().serve(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)));
        System.exit(0);
    }

    static void emit(Map<String, Object> ev) {
        String line = Json.write(ev);
        synchronized (OUT) {
            OUT.print(line + "\n");
            OUT.flush();
        }
    }

    private static Map<String, Object> ev(String kind, Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ev", kind);
        for (int i = 0; i + 1 < kv.length; i += 2) if (kv[i + 1] != null) m.put((String) kv[i], kv[i + 1]);
        return m;
    }

    private static void done(Object id, String error) {
        emit(error == null ? ev("done", "id", id, "ok", true) : ev("done", "id", id, "ok", false, "error", error));
    }

    /** Answers done when f completes: ok, or the server's error code (any text for an SDK failure). */
    private static void doneWhen(Object id, CompletableFuture<Void> f) {
        f.whenComplete((v, e) -> {
            Throwable t = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
            done(id, t == null ? null : t instanceof LcpushException ? ((LcpushException) t).code() : String.valueOf(t));
        });
    }

    void serve(BufferedReader in) throws IOException {
        emit(ev("ready", "sdk", "lcpush-java/0.1"));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.trim().isEmpty()) continue;
            Object id = null;
            try {
                Object v = Json.parse(line);
                if (!(v instanceof Map)) throw new IllegalArgumentException("not an object");
                @SuppressWarnings("unchecked") Map<String, Object> cmd = (Map<String, Object>) v;
                id = cmd.get("id");
                run(cmd, id);
            } catch (RuntimeException e) {
                done(id, "bad command: " + e.getMessage());
            }
        }
        List<Thread> closing = new ArrayList<>();
        for (Client cl : clients.values()) {
            Thread t = new Thread(cl.c::close);
            t.start();
            closing.add(t);
        }
        for (Thread t : closing) {
            try {
                t.join(10_000);
            } catch (InterruptedException e) {
                break;
            }
        }
    }

    @SuppressWarnings("unchecked")
    private void run(Map<String, Object> cmd, Object id) {
        String kind = String.valueOf(cmd.get("cmd"));
        String name = Json.str(cmd, "client");
        if (kind.equals("ping")) {
            done(id, null);
            return;
        }
        if (kind.equals("new")) {
            Object cfg = cmd.get("config");
            newClient(id, name, cfg instanceof Map ? (Map<String, Object>) cfg : new LinkedHashMap<>());
            return;
        }
        if (!List.of("connect", "ack", "bind", "unbind", "upstream", "close").contains(kind)) {
            done(id, "unknown_cmd");
            return;
        }
        Client cl = name == null ? null : clients.get(name);
        if (cl == null) {
            done(id, "no client " + name);
            return;
        }
        int app = (int) Json.num(cmd, "app", 0);
        switch (kind) {
            case "connect":
                cl.c.connect();
                done(id, null);
                break;
            case "ack": {
                List<String> ids = Json.strings(cmd, "ids");
                long[] v = new long[ids.size()];
                try {
                    for (int i = 0; i < v.length; i++) v[i] = Long.parseUnsignedLong(ids.get(i));
                } catch (NumberFormatException e) {
                    done(id, "bad id: " + e.getMessage());
                    return;
                }
                cl.c.ack(v);
                done(id, null);
                break;
            }
            case "bind":
                doneWhen(id, cl.c.bind(app, Json.str(cmd, "token")));
                break;
            case "unbind":
                doneWhen(id, cl.c.unbind(app));
                break;
            case "upstream": {
                String p = Json.str(cmd, "payload");
                doneWhen(id, cl.c.upstream(app, (int) Json.num(cmd, "type", 0),
                        (p == null ? "" : p).getBytes(StandardCharsets.UTF_8), Json.bool(cmd, "reply")));
                break;
            }
            default: { // close: it waits for the reader thread, so off the command loop
                Object cid = id;
                Thread t = new Thread(() -> {
                    cl.c.close();
                    boolean ok;
                    try {
                        ok = cl.closed.await(15, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        ok = false;
                    }
                    done(cid, ok ? null : "client did not report closed");
                });
                t.setDaemon(true);
                t.start();
            }
        }
    }

    private void newClient(Object id, String name, Map<String, Object> m) {
        if (name == null || clients.containsKey(name)) {
            done(id, "client " + name + " exists or has no name");
            return;
        }
        Config.Builder b = Config.builder().app((int) Json.num(m, "app", 0)).uid(Json.str(m, "uid")).manualAck(Json.bool(m, "manual_ack"));
        String dispatch = Json.str(m, "dispatch");
        if (dispatch != null && !dispatch.isEmpty()) b.dispatch(dispatch);
        b.addrs(Json.strings(m, "addrs"));
        String transport = Json.str(m, "transport");
        if (transport != null && !transport.isEmpty()) b.transport(transport);
        String token = Json.str(m, "token"), tokenUrl = Json.str(m, "token_url");
        if (tokenUrl != null && !tokenUrl.isEmpty()) b.tokenProvider(() -> fetchToken(tokenUrl));
        else b.token(token);
        if (m.get("hb") instanceof Number) b.heartbeatSeconds((int) Json.num(m, "hb", 0));
        b.backoff(Json.num(m, "backoff_min_ms", 0), Json.num(m, "backoff_max_ms", 0));
        b.requestTimeoutMs(10_000); // the driver protocol answers a lost request within 15 s
        b.sdkName("lcpush-java/0.1 (driver)");
        String net = Json.str(m, "net");
        if (net != null) b.net(net);
        Config cfg;
        try {
            cfg = b.build();
        } catch (IllegalArgumentException e) {
            done(id, e.getMessage());
            return;
        }
        Client cl = new Client();
        cl.c = new LcpushClient(cfg, new Listener() {
            @Override public void onState(State s, int code, String reason, String addr) {
                Map<String, Object> e = ev("state", "client", name, "state", s.wireName());
                if (s == State.CONNECTING || s == State.CONNECTED) e.put("addr", addr);
                if (s == State.CONNECTED) e.put("room", cl.c.room());
                if (code != 0) e.put("code", code);
                if (reason != null && (s == State.DISCONNECTED || s == State.CLOSED)) e.put("reason", reason);
                emit(e);
                if (s == State.CLOSED) cl.closed.countDown();
            }

            @Override public void onMessage(Message msg) {
                emit(ev("message", "client", name, "app", Integer.toUnsignedLong(msg.app), "id", Long.toUnsignedString(msg.id),
                        "qos", msg.qos, "payload", new String(msg.payload, StandardCharsets.UTF_8)));
            }

            @Override public void onKicked(int code, String reason) {
                emit(ev("kicked", "client", name, "code", code, "reason", reason));
            }

            @Override public void onRedirected(List<String> addrs, int afterMs) {
                emit(ev("redirected", "client", name, "addrs", addrs, "after_ms", afterMs));
            }

            @Override public void onError(String code, String message) {
                emit(ev("error", "client", name, "code", code, "message", message));
            }
        });
        clients.put(name, cl);
        done(id, null);
    }

    /** The driver protocol's token provider: GET token_url, use {"token":...}. */
    static String fetchToken(String url) throws IOException {
        HttpURLConnection h = (HttpURLConnection) new URL(url).openConnection();
        try {
            h.setConnectTimeout(5000);
            h.setReadTimeout(5000);
            int status = h.getResponseCode();
            if (status != 200) throw new IOException("token provider: status " + status);
            try (InputStream in = h.getInputStream()) {
                Object v = Json.parse(LcpushClient.readLimited(in, 64 << 10));
                String t = v instanceof Map ? Json.str(castMap(v), "token") : null;
                if (t == null || t.isEmpty()) throw new IOException("token provider: no token in the answer");
                return t;
            }
        } finally {
            h.disconnect();
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> castMap(Object v) {
        return (Map<String, Object>) v;
    }
}
