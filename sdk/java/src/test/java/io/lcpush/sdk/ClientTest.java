package io.lcpush.sdk;

import static io.lcpush.sdk.TestRunner.check;
import static io.lcpush.sdk.TestRunner.eq;

import com.sun.net.httpserver.HttpServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** The client against scripted fake gateways (and a fake dispatcher): what sessions.json does not cover. */
final class ClientTest {
    private ClientTest() {}

    /** Records every callback as a line, in order. */
    static final class Rec implements Listener {
        final LinkedBlockingQueue<String> ev = new LinkedBlockingQueue<>();
        final List<Message> msgs = Collections.synchronizedList(new ArrayList<>());

        @Override public void onState(State s, int code, String reason, String addr) {
            ev.add("state " + s.wireName() + (addr != null ? " " + addr : "") + (code != 0 ? " code " + code : ""));
        }
        @Override public void onMessage(Message m) {
            msgs.add(m);
            ev.add("message " + Long.toUnsignedString(m.id));
        }
        @Override public void onKicked(int code, String reason) { ev.add("kicked " + code + " " + reason); }
        @Override public void onRedirected(List<String> addrs, int afterMs) { ev.add("redirected " + addrs + " " + afterMs); }
        @Override public void onError(String code, String message) { ev.add("error " + code); }

        /** Waits for an event starting with prefix; returns it. */
        String await(String prefix) throws InterruptedException {
            long end = System.currentTimeMillis() + 5000;
            List<String> seen = new ArrayList<>();
            while (System.currentTimeMillis() < end) {
                String e = ev.poll(end - System.currentTimeMillis(), TimeUnit.MILLISECONDS);
                if (e == null) break;
                if (e.startsWith(prefix)) return e;
                seen.add(e);
            }
            throw new AssertionError("no event " + prefix + " (saw " + seen + ")");
        }
    }

    static Config.Builder cfg(String... addrs) {
        return Config.builder().addrs(Arrays.asList(addrs)).app(1).uid("alice").token("tok").backoff(20, 50);
    }

    static String code(CompletableFuture<Void> f) throws Exception {
        try {
            f.get(5, TimeUnit.SECONDS);
            return "ok";
        } catch (ExecutionException e) {
            return ((LcpushException) e.getCause()).code();
        }
    }

    static void register(TestRunner r) {
        r.add("client manual ack and dedup", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).manualAck(true).build(), rec);
                c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    eq("alice", p.login("room-a").get("uid"), "uid");
                    rec.await("state connected " + srv.addr());
                    eq("room-a", c.room(), "room");
                    p.send(Frame.push(1, -2L, true, "x".getBytes(StandardCharsets.UTF_8)));
                    p.send(Frame.push(1, -2L, true, "x".getBytes(StandardCharsets.UTF_8))); // duplicate, not acked: nothing
                    eq("message 18446744073709551614", rec.await("message"), "first copy delivered");
                    c.ack(-2L);
                    eq(-2L, Frame.ackIds(p.expect(Frame.ACK, 2000).body)[0], "manual ack");
                    p.send(Frame.push(1, -2L, true, "x".getBytes(StandardCharsets.UTF_8))); // acked by the app: re-ACKed
                    eq(-2L, Frame.ackIds(p.expect(Frame.ACK, 2000).body)[0], "re-ack of an acked duplicate");
                } finally {
                    c.close();
                }
                eq(1, rec.msgs.size(), "delivered once");
            }
        });
        r.add("client requests", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).build(), rec);
                eq("not_connected", code(c.bind(2, "t2")), "bind before connect");
                CompletableFuture<Void> first = c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    p.login("r");
                    first.get(5, TimeUnit.SECONDS);
                    rec.await("state connected");
                    CompletableFuture<Void> b = c.bind(2, "t2");
                    Frame f = p.expect(Frame.BIND, 2000);
                    eq(2, f.app, "bind app");
                    eq("t2", Json.str(Frame.jsonBody(f.body), "token"), "bind token");
                    CompletableFuture<Void> bad = c.bind(3, "t3");
                    Frame f3 = p.expect(Frame.BIND, 2000);
                    p.sendJson(Frame.ERROR, f3.seq, "{\"code\":\"bad_token\",\"message\":\"no\"}");
                    p.send(new Frame(Frame.BIND_OK, 0, f.seq, 2, null));
                    eq("ok", code(b), "bind ok");
                    eq("bad_token", code(bad), "bind refused");
                    Throwable[] seen = new Throwable[1];
                    bad.whenComplete((v, e) -> seen[0] = e);
                    check(seen[0] instanceof LcpushException && ((LcpushException) seen[0]).fromServer(), "whenComplete sees " + seen[0]);
                    CompletableFuture<Void> up = c.upstream(2, 513, new byte[] {0, (byte) 0xff}, true);
                    Frame u = p.expect(Frame.UPSTREAM, 2000);
                    eq(Frame.FLAG_REPLY_WANTED, u.flags, "reply flag");
                    eq(513, Frame.upstreamType(u.body), "type");
                    p.send(new Frame(Frame.UPSTREAM_OK, 0, u.seq, 2, null));
                    eq("ok", code(up), "upstream ok");
                    eq("ok", code(c.upstream(2, 1, new byte[3], false)), "upstream without reply");
                    eq(0, p.expect(Frame.UPSTREAM, 2000).flags, "no reply flag");
                    eq("too_large", code(c.upstream(2, 1, new byte[65535], false)), "too large");
                    CompletableFuture<Void> lost = c.unbind(2);
                    p.expect(Frame.UNBIND, 2000);
                    p.drop(); // the connection drops: the request fails
                    eq("disconnected", code(lost), "failed on drop");
                    // Reconnect: app 2 was unbound, so nothing is bound again.
                    try (FakeServer.Peer p2 = srv.accept(5000)) {
                        p2.login("r");
                        rec.await("state connected");
                        CompletableFuture<Void> b4 = c.bind(4, "t4");
                        Frame f4 = p2.expect(Frame.BIND, 2000);
                        eq(4, f4.app, "only the new bind is sent");
                        p2.send(new Frame(Frame.BIND_OK, 0, f4.seq, 4, null));
                        eq("ok", code(b4), "bind 4");
                        p2.drop();
                        try (FakeServer.Peer p3 = srv.accept(5000)) {
                            p3.login("r");
                            eq(4, p3.expect(Frame.BIND, 2000).app, "app 4 bound again after a reconnect");
                        }
                    }
                } finally {
                    c.close();
                }
                eq("closed", code(c.bind(5, "t")), "bind after close");
            }
        });
        r.add("client redirect", () -> {
            try (FakeServer a = new FakeServer(); FakeServer b = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(a.addr()).build(), rec);
                c.connect();
                try (FakeServer.Peer p = a.accept(5000)) {
                    p.login("ra");
                    rec.await("state connected " + a.addr());
                    p.sendJson(Frame.REDIRECT, 0, "{\"addrs\":[\"" + b.addr() + "\"],\"after_ms\":50,\"reason\":\"drain\"}");
                    eq("redirected [" + b.addr() + "] 50", rec.await("redirected"), "redirected event");
                    try (FakeServer.Peer q = b.accept(5000)) {
                        q.login("rb");
                        rec.await("state connected " + b.addr());
                        eq("rb", c.room(), "room");
                    }
                } finally {
                    c.close();
                }
                rec.await("state closed");
            }
        });
        r.add("client kick 4 reconnects, kick 2 is final", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).build(), rec);
                c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    p.login("r");
                    p.sendJson(Frame.KICK, 0, "{\"code\":4,\"reason\":\"server_shutdown\"}");
                    rec.await("kicked 4 server_shutdown");
                    check(p.closedWithin(2000), "closed after kick");
                }
                try (FakeServer.Peer p = srv.accept(5000)) {
                    p.login("r");
                    rec.await("state connected");
                    p.sendJson(Frame.KICK, 0, "{\"code\":2}");
                    eq("kicked 2 admin", rec.await("kicked"), "default reason");
                    rec.await("state closed");
                    check(p.closedWithin(2000), "closed after kick 2");
                    check(srv.quiet(400), "no reconnect after kick 2");
                    eq(State.CLOSED, c.state(), "state");
                } finally {
                    c.close();
                }
            }
        });
        r.add("client token provider retries bad_token", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                AtomicInteger calls = new AtomicInteger();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).token(null).tokenProvider(() -> "t" + calls.incrementAndGet()).build(), rec);
                c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    Frame a = p.expect(Frame.AUTH, 5000);
                    eq("t1", Json.str(Frame.jsonBody(a.body), "token"), "first token");
                    p.sendJson(Frame.ERROR, a.seq, "{\"code\":\"bad_token\",\"message\":\"token expired\"}");
                    rec.await("error bad_token");
                }
                try (FakeServer.Peer p = srv.accept(5000)) {
                    eq("t2", p.login("r").get("token"), "refreshed token");
                    rec.await("state connected");
                } finally {
                    c.close();
                }
            }
        });
        r.add("client auto ack batches, re-acks duplicates, acks queued offline", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).build(), rec);
                c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    p.login("r");
                    for (long id = 1; id <= 100; id++) p.send(Frame.push(1, id, true, new byte[0]));
                    List<Long> acked = new ArrayList<>();
                    while (acked.size() < 100) {
                        long[] ids = Frame.ackIds(p.expect(Frame.ACK, 2000).body);
                        check(ids.length <= 64, "batch of " + ids.length);
                        for (long id : ids) acked.add(id);
                    }
                    for (int i = 0; i < 100; i++) eq((long) i + 1, acked.get(i), "ack order");
                    p.send(Frame.push(1, 7, true, new byte[0])); // a redelivery: ACKed again, not delivered
                    eq(7L, Frame.ackIds(p.expect(Frame.ACK, 2000).body)[0], "re-ack");
                    p.send(Frame.push(1, 200, false, new byte[0])); // QoS 0: no ACK
                    rec.await("message 200");
                    p.send(Frame.push(1, 201, true, new byte[0]));
                    eq(201L, Frame.ackIds(p.expect(Frame.ACK, 2000).body)[0], "the next ACK is 201's, none for the QoS 0 one");
                } finally {
                    c.close();
                }
                eq(102, rec.msgs.size(), "each message delivered once");
            }
        });
        r.add("client dispatcher: failed list, cache per net when unreachable, static last", () -> {
            try (FakeServer good = new FakeServer(); FakeServer stat = new FakeServer()) {
                // A gateway address that refuses connections: a closed port.
                FakeServer dead = new FakeServer();
                String deadAddr = dead.addr();
                dead.close();
                List<String> queries = Collections.synchronizedList(new ArrayList<>());
                HttpServer http = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
                http.createContext("/v1/dispatch", ex -> {
                    queries.add(ex.getRequestURI().getRawQuery());
                    byte[] b = ("{\"addrs\":[\"" + deadAddr + "\",\"" + good.addr() + "\"],\"ttl\":300}").getBytes(StandardCharsets.UTF_8);
                    ex.sendResponseHeaders(200, b.length);
                    ex.getResponseBody().write(b);
                    ex.close();
                });
                http.start();
                String url = "http://127.0.0.1:" + http.getAddress().getPort();
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(stat.addr()).dispatch(url).net("wifi").build(), rec);
                c.connect();
                try (FakeServer.Peer p = good.accept(5000)) {
                    p.login("r");
                    rec.await("state connecting " + deadAddr);
                    rec.await("state connected " + good.addr());
                    String q = queries.get(0);
                    check(q.contains("uid=alice") && q.contains("app=1") && q.contains("net=wifi") && q.contains("retry=0")
                            && q.contains("transport=tcp") && !q.contains("failed="), q);
                    http.stop(0); // the dispatcher goes away: the cached answer is used
                    p.drop();
                    try (FakeServer.Peer p2 = good.accept(5000)) {
                        p2.login("r");
                        rec.await("state connected " + good.addr()); // last good first
                    }
                    eq(1, queries.size(), "the fresh cache answered (first attempt after a healthy connection)");
                } finally {
                    c.close();
                    http.stop(0);
                }
            }
        });
        r.add("client retry tells the dispatcher what failed", () -> {
            FakeServer dead = new FakeServer();
            String deadAddr = dead.addr();
            dead.close();
            List<String> queries = Collections.synchronizedList(new ArrayList<>());
            HttpServer http = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
            http.createContext("/v1/dispatch", ex -> {
                queries.add(ex.getRequestURI().getQuery());
                byte[] b = ("{\"addrs\":[\"" + deadAddr + "\"],\"ttl\":300}").getBytes(StandardCharsets.UTF_8);
                ex.sendResponseHeaders(200, b.length);
                ex.getResponseBody().write(b);
                ex.close();
            });
            http.start();
            Rec rec = new Rec();
            LcpushClient c = new LcpushClient(Config.builder().dispatch("http://127.0.0.1:" + http.getAddress().getPort())
                    .uid("bob").token("t").backoff(10, 20).build(), rec);
            try {
                c.connect();
                long end = System.currentTimeMillis() + 5000;
                while (queries.size() < 3 && System.currentTimeMillis() < end) Thread.sleep(20);
                check(queries.size() >= 3, "queries " + queries);
                check(queries.get(1).contains("retry=1") && queries.get(1).contains("failed=" + deadAddr), queries.get(1));
            } finally {
                c.close();
                http.stop(0);
            }
        });
        r.add("client read timeout reconnects", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient c = new LcpushClient(cfg(srv.addr()).build(), rec);
                c.connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    Frame a = p.expect(Frame.AUTH, 5000);
                    p.sendJson(Frame.AUTH_OK, a.seq, "{\"hb\":1,\"room\":\"r\"}");
                    p.expect(Frame.PING, 2500); // and never answer: 2*1+1.5 s later the client gives up
                    try (FakeServer.Peer p2 = srv.accept(6000)) {
                        p2.login("r");
                        rec.await("state connected");
                    }
                } finally {
                    c.close();
                }
            }
        });
        r.add("client close from a callback, throwing listener", () -> {
            try (FakeServer srv = new FakeServer()) {
                Rec rec = new Rec();
                LcpushClient[] self = new LcpushClient[1];
                self[0] = new LcpushClient(cfg(srv.addr()).build(), new Listener() {
                    @Override public void onMessage(Message m) {
                        rec.onMessage(m);
                        if (m.id == 1) throw new IllegalStateException("app bug");
                        self[0].close();
                    }
                    @Override public void onState(State s, int code, String reason, String addr) { rec.onState(s, code, reason, addr); }
                });
                self[0].connect();
                try (FakeServer.Peer p = srv.accept(5000)) {
                    p.login("r");
                    p.send(Frame.push(1, 1, true, new byte[0]));
                    eq(1L, Frame.ackIds(p.expect(Frame.ACK, 2000).body)[0], "acked despite the exception");
                    p.send(Frame.push(1, 2, true, new byte[0]));
                    rec.await("state closed");
                    check(p.closedWithin(2000), "connection closed");
                    eq(State.CLOSED, self[0].state(), "state");
                }
            }
        });
        r.add("client close before connect", () -> {
            Rec rec = new Rec();
            LcpushClient c = new LcpushClient(cfg("127.0.0.1:1").build(), rec);
            c.close();
            rec.await("state closed");
            check(c.connect().isCompletedExceptionally(), "connect after close");
        });
    }
}
