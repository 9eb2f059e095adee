package io.lcpush.sdk;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UnsupportedEncodingException;
import java.net.HttpURLConnection;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URL;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntFunction;

/**
 * One device's connection to lcpush, following the state machine of the Go
 * reference SDK (pkg/sdk): find a gateway (redirect targets, the last good
 * address, the dispatcher's answer, the static addresses; recently failed
 * ones last), AUTH, heartbeat, deliver each message once, batch ACKs, match
 * requests to replies by Seq, and reconnect with jittered exponential
 * backoff until close() or a final error (KICK 1-3, bad_token of a static
 * token).
 *
 * <p>Threads: one reader thread (connects, reads, and runs every Listener
 * callback in order) and one single-thread scheduler (heartbeat, ACK
 * batching, reconnect timers, request timeouts, and every socket write, so
 * that an app thread, e.g. Android's main thread, never touches the
 * network). close() stops both.
 */
public final class LcpushClient implements AutoCloseable {
    static final int ACK_BATCH = 64;
    static final long ACK_DELAY_MS = 10;
    static final int MAX_PENDING_ACKS = 4096; // ids waiting for a connection; the oldest are dropped (the server redelivers)
    static final int MAX_PENDING = 1024; // requests waiting for a reply
    static final int MAX_BINDS = 256;
    static final int MAX_ADDRS = 32; // candidates per connect pass
    static final int MAX_FAILED = 16;
    static final long FAILED_TTL_MS = 5 * 60_000;
    static final int MAX_FRAME_IN = 4 << 20; // largest frame accepted from the server
    static final long MAX_REDIRECT_WAIT_MS = 5 * 60_000;
    static final String SDK_CODES = " closed not_connected disconnected busy timeout too_large ";

    private final Config cfg;
    private final Listener listener;
    private final ScheduledThreadPoolExecutor sched;
    private final Dedup dedup;
    private final AtomicInteger seq = new AtomicInteger();
    private final Semaphore wake = new Semaphore(0);
    private final CompletableFuture<Void> firstConnect = new CompletableFuture<>();

    private final Object lock = new Object();
    // Guarded by lock.
    private boolean closed;
    private Thread reader;
    private Conn conn; // the authenticated connection, null between connections
    private Socket dialing; // a dial in progress, closed by close() to abort it
    private HttpURLConnection dispatching;
    private ScheduledFuture<?> heartbeat;
    private final Map<Integer, Pending> pending = new HashMap<>();
    private final Map<Integer, String> binds = new LinkedHashMap<>();
    private final Map<String, Long> failed = new LinkedHashMap<>(); // addr -> when, oldest first
    private String lastGood;
    private final Map<String, Cached> dispatchCache = new HashMap<>(); // per net

    private final Object ackLock = new Object();
    private long[] acks = new long[ACK_BATCH];
    private int nAcks;
    private boolean ackTimer;

    // Written by the reader thread, read anywhere.
    private volatile State state = State.DISCONNECTED;
    private volatile String room = "";
    private volatile String addr = "";
    private volatile int hb;
    private int finalCode; // why the client stopped on its own (reader thread only)
    private String finalReason = "closed";
    private boolean closedReported;

    public LcpushClient(Config cfg, Listener listener) {
        this.cfg = cfg;
        this.listener = listener == null ? new Listener() {} : listener;
        this.dedup = new Dedup(cfg.dedupWindow);
        this.hb = cfg.heartbeatSeconds;
        sched = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "lcpush-timer");
            t.setDaemon(true);
            return t;
        });
        sched.setRemoveOnCancelPolicy(true);
        sched.setExecuteExistingDelayedTasksAfterShutdownPolicy(false);
        sched.setContinueExistingPeriodicTasksAfterShutdownPolicy(false);
    }

    public State state() { return state; }

    /** The room instance id of the last AUTH_OK. */
    public String room() { return room; }

    /** The gateway address of the current (or last) connection, as dialed. */
    public String addr() { return addr; }

    /** The heartbeat negotiated with the server, seconds (the requested one before the first AUTH_OK). */
    public int heartbeatSeconds() { return hb; }

    /**
     * Starts the reader thread, which connects and keeps the client
     * connected. The future completes at the first AUTH_OK, or exceptionally
     * if the client stops before. Calling it again returns the same future.
     */
    public CompletableFuture<Void> connect() {
        synchronized (lock) {
            if (closed) {
                firstConnect.completeExceptionally(new LcpushException("closed", "client closed"));
                return firstConnect;
            }
            if (reader == null) {
                reader = new Thread(this::run, "lcpush-reader-" + cfg.uid);
                reader.setDaemon(true);
                reader.start();
            }
        }
        return firstConnect;
    }

    /**
     * Closes the connection (queued ACKs are flushed first, best effort) and
     * stops both threads; CLOSED is the last callback. Idempotent. From
     * outside the reader thread it waits (a few seconds at most) for the
     * reader to end; from a callback it returns at once and the reader ends
     * after that callback.
     */
    @Override
    public void close() {
        Conn c;
        Thread r;
        Socket d;
        HttpURLConnection h;
        synchronized (lock) {
            if (closed) return;
            closed = true;
            c = conn;
            r = reader;
            d = dialing;
            h = dispatching;
        }
        failPending(null, "closed");
        wake.release();
        if (d != null) closeQuietly(d);
        if (h != null) h.disconnect();
        if (c != null) {
            try {
                Future<?> f = sched.submit(() -> {
                    flushAcks(c);
                    c.close();
                });
                if (Thread.currentThread() != r) f.get(1, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (Exception e) {
                // the flush is best effort
            }
            if (Thread.currentThread() != r) c.close();
        }
        if (r == null) {
            sched.shutdown();
            firstConnect.completeExceptionally(new LcpushException("closed", "client closed"));
            emitState(State.CLOSED, 0, "closed", null);
            return;
        }
        if (Thread.currentThread() != r) {
            try {
                r.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private boolean isClosed() {
        synchronized (lock) {
            return closed;
        }
    }

    // ---- The reader thread.

    private void run() {
        int attempt = 0;
        List<String> first = Collections.emptyList();
        long delay = 0;
        try {
            while (pause(delay)) {
                Conn c;
                try {
                    c = connectPass(first, attempt);
                } catch (FinalException f) {
                    finalCode = f.code;
                    finalReason = f.getMessage();
                    emitState(State.DISCONNECTED, f.code, f.getMessage(), null);
                    return;
                } catch (IOException | RuntimeException e) {
                    if (isClosed()) return;
                    emitState(State.DISCONNECTED, 0, reasonOf(e), null);
                    attempt++;
                    first = Collections.emptyList();
                    delay = backoff(cfg.backoffMinMs, cfg.backoffMaxMs, attempt);
                    continue;
                }
                if (!activate(c)) {
                    c.close();
                    return;
                }
                long began = System.nanoTime();
                IOException why = serve(c);
                deactivate(c);
                if (isClosed()) return;
                delay = -1;
                first = Collections.emptyList();
                int code = 0;
                if (why instanceof KickException) {
                    KickException k = (KickException) why;
                    code = k.code;
                    if (k.terminal()) {
                        finalCode = k.code;
                        finalReason = k.reason;
                        emitState(State.DISCONNECTED, k.code, k.reason, null);
                        return;
                    }
                    markFailed(c.addr); // server_shutdown: go elsewhere
                } else if (why instanceof RedirectException) {
                    RedirectException rd = (RedirectException) why;
                    markFailed(c.addr);
                    first = rd.addrs;
                    delay = rd.delay();
                }
                emitState(State.DISCONNECTED, code, reasonOf(why), null);
                if (System.nanoTime() - began >= cfg.backoffMaxMs * 1_000_000L) attempt = 0; // that connection was healthy
                if (delay < 0) delay = backoff(cfg.backoffMinMs, cfg.backoffMaxMs, attempt);
            }
        } catch (RuntimeException | Error t) {
            safe(() -> listener.onError("internal", String.valueOf(t)));
        } finally {
            stopAll();
        }
    }

    /** The reader's last act: everything stops, CLOSED is reported. */
    private void stopAll() {
        ScheduledFuture<?> h;
        synchronized (lock) {
            closed = true;
            conn = null;
            h = heartbeat;
            heartbeat = null;
        }
        if (h != null) h.cancel(false);
        failPending(null, "closed");
        sched.shutdown();
        firstConnect.completeExceptionally(new LcpushException("closed", finalReason));
        emitState(State.CLOSED, finalCode, finalReason, null);
    }

    /** Waits ms on a scheduler timer (the reconnect timer); false once closed. */
    private boolean pause(long ms) {
        if (ms <= 0) return !isClosed();
        wake.drainPermits();
        if (isClosed()) return false; // close() released before the drain
        ScheduledFuture<?> t;
        try {
            t = sched.schedule(() -> wake.release(), ms, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            return false;
        }
        wake.acquireUninterruptibly();
        t.cancel(false);
        return !isClosed();
    }

    /** Exponential from lo to hi with full jitter: random in [0, min(hi, lo * 2^attempt)]. */
    public static long backoff(long lo, long hi, int attempt) {
        long ceil = lo;
        for (int i = 0; i < attempt && ceil < hi; i++) ceil *= 2;
        ceil = Math.min(ceil, hi);
        return ThreadLocalRandom.current().nextLong(ceil + 1);
    }

    /**
     * One pass over the candidate addresses. A bad_token stops the pass at
     * once (every gateway checks the same token); it is final for a static
     * token only.
     */
    private Conn connectPass(List<String> first, int attempt) throws IOException {
        String token = cfg.token;
        if (cfg.tokenProvider != null) {
            try {
                token = cfg.tokenProvider.token();
            } catch (Exception e) {
                safe(() -> listener.onError("token_provider", String.valueOf(e)));
                throw new IOException("token provider: " + e, e);
            }
            if (token == null || token.isEmpty()) throw new IOException("token provider returned no token");
        }
        List<String> addrs = candidates(first, attempt);
        if (addrs.isEmpty()) throw new IOException("no gateway address");
        IOException last = null;
        for (int i = 0; i < addrs.size() && i < 2 * MAX_ADDRS; i++) {
            String a = addrs.get(i);
            if (isClosed()) throw new IOException("closed");
            emitState(State.CONNECTING, 0, null, a);
            try {
                return handshake(a, token);
            } catch (ServerErrorException e) {
                if (isClosed()) throw e;
                safe(() -> listener.onError(e.code, e.detail));
                if ("bad_token".equals(e.code)) {
                    if (cfg.tokenProvider == null) throw new FinalException(0, "bad_token");
                    throw e;
                }
                markFailed(a);
                last = e;
            } catch (KickException k) {
                safe(() -> listener.onKicked(k.code, k.reason));
                if (k.terminal()) throw new FinalException(k.code, k.reason);
                markFailed(a);
                last = k;
            } catch (RedirectException r) {
                safe(() -> listener.onRedirected(r.addrs, (int) r.afterMs));
                markFailed(a);
                List<String> more = new ArrayList<>(r.addrs);
                more.removeIf(addrs::contains);
                addrs.addAll(i + 1, more);
                if (!pause(r.delay())) throw new IOException("closed");
                last = r;
            } catch (IOException | RuntimeException e) {
                if (isClosed()) throw new IOException("closed");
                markFailed(a);
                last = e instanceof IOException ? (IOException) e : new IOException(e.toString(), e);
            }
        }
        throw new IOException(addrs.size() + " addresses failed, last: " + reasonOf(last), last);
    }

    /** Dials addr, sends AUTH and waits for AUTH_OK, all within the connect timeout. */
    private Conn handshake(String a, String token) throws IOException {
        long deadline = System.nanoTime() + cfg.connectTimeoutMs * 1_000_000L;
        Conn c = Conn.dial(a, cfg, cfg.connectTimeoutMs, s -> {
            synchronized (lock) {
                dialing = s;
                if (closed) closeQuietly(s);
            }
        });
        try {
            Map<String, Object> auth = new LinkedHashMap<>();
            auth.put("uid", cfg.uid);
            auth.put("token", token);
            if (cfg.device != null && !cfg.device.isEmpty()) auth.put("device", cfg.device);
            if (!cfg.net.isEmpty()) auth.put("net", cfg.net);
            auth.put("hb", cfg.heartbeatSeconds);
            auth.put("sdk", cfg.sdkName);
            c.write(Frame.json(Frame.AUTH, nextSeq(), cfg.app, auth));
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000L;
                if (left <= 0) throw new SocketTimeoutException("no AUTH_OK within " + cfg.connectTimeoutMs + " ms");
                c.sock.setSoTimeout((int) left);
                Frame f = c.read(MAX_FRAME_IN);
                switch (f.op) {
                    case Frame.AUTH_OK: {
                        Map<String, Object> ok = Frame.jsonBody(f.body);
                        long h = Json.num(ok, "hb", 0);
                        c.hb = h > 0 ? (int) Math.min(h, 86400) : cfg.heartbeatSeconds;
                        String r = Json.str(ok, "room");
                        c.room = r == null ? "" : r;
                        return c;
                    }
                    case Frame.ERROR:
                        throw ServerErrorException.decode(f.body);
                    case Frame.KICK:
                        throw KickException.decode(f.body);
                    case Frame.REDIRECT:
                        throw RedirectException.decode(f.body);
                    default:
                        // anything else before AUTH_OK is ignored; the deadline bounds the wait
                }
            }
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        } finally {
            synchronized (lock) {
                dialing = null;
            }
        }
    }

    private boolean activate(Conn c) {
        Map<Integer, String> again;
        synchronized (lock) {
            if (closed) return false;
            conn = c;
            lastGood = c.addr;
            again = new LinkedHashMap<>(binds);
            failed.remove(c.addr);
        }
        hb = c.hb;
        room = c.room;
        addr = c.addr;
        emitState(State.CONNECTED, 0, null, c.addr);
        firstConnect.complete(null);
        try {
            ScheduledFuture<?> h = sched.scheduleAtFixedRate(() -> {
                try {
                    c.write(new Frame(Frame.PING, 0, 0, 0, null));
                } catch (IOException e) {
                    // the reader sees the closed socket and reconnects
                }
            }, c.hb, c.hb, TimeUnit.SECONDS);
            synchronized (lock) {
                heartbeat = h;
            }
            sched.execute(() -> flushAcks(c)); // ACKs queued while disconnected
        } catch (RejectedExecutionException e) {
            return false;
        }
        rebind(again);
        return true;
    }

    private void deactivate(Conn c) {
        ScheduledFuture<?> h;
        synchronized (lock) {
            if (conn == c) conn = null;
            h = heartbeat;
            heartbeat = null;
        }
        if (h != null) h.cancel(false);
        c.close();
        failPending(c, "disconnected");
    }

    /**
     * Reads frames until the connection ends and returns why. The read
     * timeout is 2 heartbeats plus a grace of half a heartbeat and a second:
     * the server answers every PING, so silence that long means a dead path.
     */
    private IOException serve(Conn c) {
        ServerErrorException serverErr = null; // the last ERROR no request waited for
        try {
            c.sock.setSoTimeout((2 * c.hb + c.hb / 2 + 1) * 1000);
        } catch (IOException e) {
            return e;
        }
        while (true) {
            Frame f;
            try {
                f = c.read(MAX_FRAME_IN);
            } catch (IOException e) {
                // The server closes after an ERROR it sent on its own: that ERROR is why.
                if (serverErr != null && !(e instanceof Frame.ProtocolException)) return serverErr;
                return e;
            }
            if (f.op != Frame.ERROR) serverErr = null;
            try {
                switch (f.op) {
                    case Frame.PUSH:
                        onPush(f);
                        break;
                    case Frame.UPSTREAM_OK:
                    case Frame.BIND_OK:
                    case Frame.UNBIND_OK:
                        resolve(f.seq, null);
                        break;
                    case Frame.ERROR: {
                        ServerErrorException e = ServerErrorException.decode(f.body);
                        if (!resolve(f.seq, new LcpushException(e.code, e.detail, true))) {
                            serverErr = e;
                            safe(() -> listener.onError(e.code, e.detail));
                        }
                        break;
                    }
                    case Frame.KICK: {
                        KickException k = KickException.decode(f.body);
                        safe(() -> listener.onKicked(k.code, k.reason));
                        return k;
                    }
                    case Frame.REDIRECT: {
                        RedirectException r = RedirectException.decode(f.body);
                        safe(() -> listener.onRedirected(r.addrs, (int) r.afterMs));
                        return r;
                    }
                    default:
                        // PONG only proves the path is alive; unknown ops are future extensions
                }
            } catch (Frame.ProtocolException e) {
                return e;
            }
            if (c.isClosed()) return new EOFException("connection closed");
        }
    }

    private void onPush(Frame f) throws Frame.ProtocolException {
        long id = Frame.pushId(f.body);
        boolean qos1 = (f.flags & Frame.FLAG_ACK_REQUIRED) != 0;
        Boolean acked = dedup.add(id);
        if (acked != null) {
            // A redelivery: the first ACK was lost (or not sent yet, in which
            // case the pending one covers it). Manual mode re-ACKs only what the app acked.
            if (qos1 && (!cfg.manualAck || acked)) queueAcks(new long[] {id});
            return;
        }
        Message m = new Message(f.app, id, qos1 ? 1 : 0, Frame.pushPayload(f.body));
        safe(() -> listener.onMessage(m));
        if (qos1 && !cfg.manualAck) queueAcks(new long[] {id});
    }

    // ---- ACKs.

    /** Acknowledges QoS 1 messages (manual mode); sent in batches on the current or next connection. */
    public void ack(long... ids) {
        if (ids != null && ids.length > 0) queueAcks(ids.clone());
    }

    private void queueAcks(long[] ids) {
        dedup.markAcked(ids);
        boolean now = false, later = false;
        synchronized (ackLock) {
            if (nAcks + ids.length > acks.length) acks = java.util.Arrays.copyOf(acks, Math.max(acks.length * 2, nAcks + ids.length));
            System.arraycopy(ids, 0, acks, nAcks, ids.length);
            nAcks += ids.length;
            if (nAcks > MAX_PENDING_ACKS) { // long offline: forget the oldest, the server redelivers them
                System.arraycopy(acks, nAcks - MAX_PENDING_ACKS, acks, 0, MAX_PENDING_ACKS);
                nAcks = MAX_PENDING_ACKS;
            }
            if (nAcks >= ACK_BATCH) now = true;
            else if (!ackTimer) later = ackTimer = true;
        }
        try {
            if (now) sched.execute(() -> flushAcks(null));
            else if (later) sched.schedule(() -> flushAcks(null), ACK_DELAY_MS, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            // closed
        }
    }

    /** Sends every queued id (scheduler thread); ids that could not be written stay queued. */
    private void flushAcks(Conn on) {
        Conn c = on;
        if (c == null) synchronized (lock) {
            c = conn;
        }
        long[] ids;
        int n;
        synchronized (ackLock) {
            ackTimer = false;
            if (c == null || nAcks == 0) return;
            ids = java.util.Arrays.copyOf(acks, nAcks);
            n = nAcks;
            nAcks = 0;
        }
        for (int off = 0; off < n; off += ACK_BATCH) {
            int k = Math.min(ACK_BATCH, n - off);
            try {
                c.write(Frame.ack(0, 0, ids, off, k));
            } catch (IOException e) {
                long[] rest = java.util.Arrays.copyOfRange(ids, off, n);
                synchronized (ackLock) {
                    long[] merged = new long[rest.length + nAcks];
                    System.arraycopy(rest, 0, merged, 0, rest.length);
                    System.arraycopy(acks, 0, merged, rest.length, nAcks);
                    int keep = Math.min(merged.length, MAX_PENDING_ACKS);
                    long[] nb = new long[Math.max(ACK_BATCH, keep)];
                    System.arraycopy(merged, merged.length - keep, nb, 0, keep);
                    acks = nb;
                    nAcks = keep;
                }
                return;
            }
        }
    }

    // ---- Requests.

    private static final class Pending {
        final Conn conn;
        final CompletableFuture<Void> future;

        Pending(Conn conn, CompletableFuture<Void> future) {
            this.conn = conn;
            this.future = future;
        }
    }

    private int nextSeq() {
        while (true) {
            int v = seq.incrementAndGet();
            if (v != 0) return v; // Seq 0 is the server's own frames
        }
    }

    /**
     * Adds app to the connection with that app's token. Completes on BIND_OK,
     * exceptionally (LcpushException with the server's code) on ERROR. Bound
     * apps are bound again after a reconnect.
     */
    public CompletableFuture<Void> bind(int app, String token) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("token", token);
        CompletableFuture<Void> out = new CompletableFuture<>(); // not thenRun: callers see the LcpushException itself
        request(s -> Frame.json(Frame.BIND, s, app, body)).whenComplete((v, e) -> {
            if (e != null) {
                out.completeExceptionally(e);
                return;
            }
            synchronized (lock) {
                if (binds.containsKey(app) || binds.size() < MAX_BINDS) binds.put(app, token);
            }
            out.complete(null);
        });
        return out;
    }

    /** Removes app from the connection; completes on UNBIND_OK. */
    public CompletableFuture<Void> unbind(int app) {
        synchronized (lock) {
            binds.remove(app);
        }
        // ACKs still batched go first: after UNBIND the server ignores ACKs of the app's messages.
        return request(s -> new Frame(Frame.UNBIND, 0, s, app, null), true);
    }

    /**
     * Sends data of type (u16) to app's back end. With reply it completes on
     * UPSTREAM_OK (the coordinator accepted it); without, once the frame is
     * written.
     */
    public CompletableFuture<Void> upstream(int app, int type, byte[] payload, boolean reply) {
        byte[] p = payload == null ? new byte[0] : payload;
        if (Frame.MIN_LEN + 2 + p.length > Frame.DEFAULT_MAX_LEN)
            return failed(new LcpushException("too_large", "upstream of " + p.length + " bytes"));
        if (reply) return request(s -> Frame.upstream(s, app, true, type, p));
        Conn c;
        synchronized (lock) {
            if (closed) return failed(new LcpushException("closed", null));
            c = conn;
        }
        if (c == null) return failed(new LcpushException("not_connected", null));
        CompletableFuture<Void> f = new CompletableFuture<>();
        Frame fr = Frame.upstream(nextSeq(), app, false, type, p);
        try {
            sched.execute(() -> {
                try {
                    c.write(fr);
                    f.complete(null);
                } catch (IOException e) {
                    f.completeExceptionally(new LcpushException("disconnected", e.getMessage()));
                }
            });
        } catch (RejectedExecutionException e) {
            f.completeExceptionally(new LcpushException("closed", null));
        }
        return f;
    }

    private static CompletableFuture<Void> failed(Exception e) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        f.completeExceptionally(e);
        return f;
    }

    /** Registers the request under a new Seq before writing it, so a fast reply finds its waiter. */
    private CompletableFuture<Void> request(IntFunction<Frame> build) {
        return request(build, false);
    }

    private CompletableFuture<Void> request(IntFunction<Frame> build, boolean acksFirst) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        Conn c;
        int s;
        synchronized (lock) {
            if (closed) return failed(new LcpushException("closed", null));
            c = conn;
            if (c == null) return failed(new LcpushException("not_connected", null));
            if (pending.size() >= MAX_PENDING) return failed(new LcpushException("busy", "too many requests in flight"));
            s = nextSeq();
            pending.put(s, new Pending(c, f));
        }
        Frame fr = build.apply(s);
        try {
            sched.execute(() -> {
                try {
                    if (acksFirst) flushAcks(c);
                    c.write(fr);
                } catch (IOException e) {
                    resolve(s, new LcpushException("disconnected", e.getMessage()));
                }
            });
            ScheduledFuture<?> t = sched.schedule(() -> resolve(s, new LcpushException("timeout", "no reply")),
                    cfg.requestTimeoutMs, TimeUnit.MILLISECONDS);
            f.whenComplete((v, e) -> t.cancel(false));
        } catch (RejectedExecutionException e) {
            resolve(s, new LcpushException("closed", null));
        }
        return f;
    }

    /** Completes the request with Seq seq (err null: success); false if none waits for it. */
    private boolean resolve(int s, LcpushException err) {
        if (s == 0) return false;
        Pending p;
        synchronized (lock) {
            p = pending.remove(s);
        }
        if (p == null) return false;
        if (err == null) p.future.complete(null);
        else p.future.completeExceptionally(err);
        return true;
    }

    /** Fails the requests sent on c (every request when c is null). */
    private void failPending(Conn c, String code) {
        List<Pending> fail = new ArrayList<>();
        synchronized (lock) {
            for (Iterator<Pending> it = pending.values().iterator(); it.hasNext(); ) {
                Pending p = it.next();
                if (c == null || p.conn == c) {
                    fail.add(p);
                    it.remove();
                }
            }
        }
        for (Pending p : fail) p.future.completeExceptionally(new LcpushException(code, "connection lost"));
    }

    /** Binds again, on a new connection, the apps bound before; an app whose token is now refused is forgotten. */
    private void rebind(Map<Integer, String> again) {
        for (Map.Entry<Integer, String> e : again.entrySet()) {
            int app = e.getKey();
            String token = e.getValue();
            Map<String, Object> body = new LinkedHashMap<>();
            body.put("token", token);
            request(s -> Frame.json(Frame.BIND, s, app, body)).whenComplete((v, err) -> {
                Throwable t = err instanceof java.util.concurrent.CompletionException ? err.getCause() : err;
                if (t instanceof LcpushException && ((LcpushException) t).fromServer()) {
                    synchronized (lock) {
                        if (token.equals(binds.get(app))) binds.remove(app);
                    }
                }
            });
        }
    }

    // ---- Addresses and the dispatcher.

    private static final class Cached {
        final List<String> addrs;
        final long expires;

        Cached(List<String> addrs, long expires) {
            this.addrs = addrs;
            this.expires = expires;
        }

        boolean fresh() {
            return System.currentTimeMillis() < expires;
        }
    }

    /**
     * The addresses of one pass, without duplicates: redirect targets, the
     * last good address (when still offered), dispatched then static ones;
     * recently failed addresses go last (still tried, after every other).
     */
    List<String> candidates(List<String> first, int attempt) {
        List<String> rest = new ArrayList<>();
        if (!cfg.dispatchUrls.isEmpty()) rest.addAll(dispatch(attempt));
        rest.addAll(cfg.addrs);
        Set<String> bad = failedList();
        String good;
        synchronized (lock) {
            good = lastGood;
        }
        LinkedHashSet<String> out = new LinkedHashSet<>(first);
        if (good != null && rest.contains(good) && !bad.contains(good)) out.add(good);
        for (String a : rest) if (!bad.contains(a)) out.add(a);
        out.addAll(rest);
        out.remove("");
        out.remove(null);
        List<String> l = new ArrayList<>(out);
        return l.size() > MAX_ADDRS ? new ArrayList<>(l.subList(0, MAX_ADDRS)) : l;
    }

    private void markFailed(String a) {
        synchronized (lock) {
            failed.remove(a);
            failed.put(a, System.currentTimeMillis());
            while (failed.size() > MAX_FAILED) failed.remove(failed.keySet().iterator().next());
            if (a.equals(lastGood)) lastGood = null;
        }
    }

    private Set<String> failedList() {
        long cutoff = System.currentTimeMillis() - FAILED_TTL_MS;
        synchronized (lock) {
            failed.values().removeIf(t -> t < cutoff);
            return new LinkedHashSet<>(failed.keySet());
        }
    }

    /**
     * Gateway addresses from the dispatcher. A fresh cached answer (per net,
     * for its ttl) is used on a first attempt with nothing failed, and
     * whenever no dispatcher answers; retries ask, telling what failed.
     */
    private List<String> dispatch(int attempt) {
        Set<String> bad = failedList();
        Cached cached;
        synchronized (lock) {
            cached = dispatchCache.get(cfg.net);
        }
        if (attempt == 0 && bad.isEmpty() && cached != null && cached.fresh()) return cached.addrs;
        IOException last = null;
        for (String base : cfg.dispatchUrls) {
            try {
                return askDispatcher(base, attempt, bad);
            } catch (IOException e) {
                last = e;
                if (isClosed()) break;
            }
        }
        String msg = String.valueOf(last);
        safe(() -> listener.onError("dispatch_failed", msg));
        return cached != null && cached.fresh() ? cached.addrs : Collections.emptyList();
    }

    private List<String> askDispatcher(String base, int attempt, Set<String> bad) throws IOException {
        StringBuilder u = new StringBuilder(base.endsWith("/") ? base.substring(0, base.length() - 1) : base);
        u.append("/v1/dispatch?uid=").append(enc(cfg.uid)).append("&app=").append(cfg.app & 0xFFFFFFFFL);
        if (!cfg.net.isEmpty()) u.append("&net=").append(enc(cfg.net));
        u.append("&retry=").append(attempt).append("&transport=").append(cfg.transport);
        if (!bad.isEmpty()) {
            LinkedHashSet<String> hps = new LinkedHashSet<>();
            for (String a : bad) hps.add(Endpoint.hostPort(a));
            StringBuilder f = new StringBuilder();
            for (String hp : hps) f.append(f.length() > 0 ? "," : "").append(hp);
            u.append("&failed=").append(enc(f.toString()));
        }
        HttpURLConnection h = (HttpURLConnection) new URL(u.toString()).openConnection();
        synchronized (lock) {
            if (closed) throw new IOException("closed");
            dispatching = h;
        }
        try {
            h.setConnectTimeout(cfg.connectTimeoutMs);
            h.setReadTimeout(cfg.connectTimeoutMs);
            h.setUseCaches(false);
            h.setInstanceFollowRedirects(false);
            int status = h.getResponseCode();
            if (status != 200) throw new IOException("dispatcher " + base + ": status " + status);
            Object v;
            try (InputStream in = h.getInputStream()) {
                v = Json.parse(readLimited(in, 64 << 10));
            } catch (IllegalArgumentException e) {
                throw new IOException("dispatcher " + base + ": " + e.getMessage());
            }
            if (!(v instanceof Map)) throw new IOException("dispatcher " + base + ": answer is not an object");
            @SuppressWarnings("unchecked") Map<String, Object> m = (Map<String, Object>) v;
            List<String> addrs = new ArrayList<>();
            for (String a : Json.strings(m, "addrs")) if (!a.isEmpty() && addrs.size() < MAX_ADDRS) addrs.add(a);
            long ttl = Json.num(m, "ttl", 0);
            if (ttl > 0 && !addrs.isEmpty()) {
                synchronized (lock) {
                    dispatchCache.put(cfg.net, new Cached(addrs, System.currentTimeMillis() + ttl * 1000));
                }
            }
            return addrs;
        } finally {
            h.disconnect();
            synchronized (lock) {
                dispatching = null;
            }
        }
    }

    static String readLimited(InputStream in, int max) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] b = new byte[4096];
        for (int n; (n = in.read(b)) > 0; ) {
            out.write(b, 0, n);
            if (out.size() > max) throw new IOException("answer over " + max + " bytes");
        }
        return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }

    private static String enc(String s) {
        try {
            return URLEncoder.encode(s, "UTF-8"); // the Charset overload is not on older Android
        } catch (UnsupportedEncodingException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- Callbacks.

    private void emitState(State s, int code, String reason, String a) {
        if (s == State.CLOSED) {
            if (closedReported) return;
            closedReported = true;
        }
        state = s;
        safe(() -> listener.onState(s, code, reason, a));
    }

    /** A throwing listener must not kill the reader. */
    private static void safe(Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            // the application's bug; the connection goes on
        }
    }

    private static String reasonOf(Throwable e) {
        if (e == null) return "unknown";
        if (e instanceof ServerErrorException) return ((ServerErrorException) e).code;
        if (e instanceof KickException) return ((KickException) e).reason;
        if (e instanceof RedirectException) return "redirect";
        if (e instanceof SocketTimeoutException) return "timeout: " + e.getMessage();
        if (e instanceof EOFException) return "connection closed";
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closing
        }
    }

    // ---- Why a connection ended (internal).

    /** Stops the client for good. */
    private static final class FinalException extends IOException {
        private static final long serialVersionUID = 1L;
        final int code;

        FinalException(int code, String reason) {
            super(reason);
            this.code = code;
        }
    }

    static final class ServerErrorException extends IOException {
        private static final long serialVersionUID = 1L;
        final String code, detail;

        ServerErrorException(String code, String detail) {
            super("server error " + code + ": " + detail);
            this.code = code;
            this.detail = detail;
        }

        static ServerErrorException decode(byte[] body) {
            try {
                Map<String, Object> m = Frame.jsonBody(body);
                String code = Json.str(m, "code");
                if (code != null && !code.isEmpty()) {
                    String msg = Json.str(m, "message");
                    return new ServerErrorException(code, msg == null ? "" : msg);
                }
            } catch (Frame.ProtocolException e) {
                // fall through
            }
            return new ServerErrorException("internal", "undecodable ERROR body");
        }
    }

    static final class KickException extends IOException {
        private static final long serialVersionUID = 1L;
        final int code;
        final String reason;

        KickException(int code, String reason) {
            super("kicked: " + code + " " + reason);
            this.code = code;
            this.reason = reason;
        }

        boolean terminal() {
            return code >= 1 && code <= 3;
        }

        static KickException decode(byte[] body) {
            try {
                Map<String, Object> m = Frame.jsonBody(body);
                int code = (int) Json.num(m, "code", 0);
                String r = Json.str(m, "reason");
                if (r == null || r.isEmpty()) {
                    String[] names = {"", "login_elsewhere", "admin", "banned", "server_shutdown"};
                    r = code >= 1 && code <= 4 ? names[code] : "kicked";
                }
                return new KickException(code, r);
            } catch (Frame.ProtocolException e) {
                return new KickException(0, "undecodable kick");
            }
        }
    }

    static final class RedirectException extends IOException {
        private static final long serialVersionUID = 1L;
        final List<String> addrs;
        final long afterMs;

        RedirectException(List<String> addrs, long afterMs) {
            super("redirected to " + addrs);
            this.addrs = addrs;
            this.afterMs = afterMs;
        }

        long delay() {
            return afterMs <= 0 ? 0 : ThreadLocalRandom.current().nextLong(afterMs + 1);
        }

        static RedirectException decode(byte[] body) {
            Map<String, Object> m;
            try {
                m = Frame.jsonBody(body);
            } catch (Frame.ProtocolException e) {
                m = Collections.emptyMap(); // a bad body still means "go elsewhere"
            }
            List<String> addrs = new ArrayList<>();
            for (String a : Json.strings(m, "addrs")) if (!a.isEmpty() && addrs.size() < MAX_ADDRS) addrs.add(a);
            long after = Math.max(0, Math.min(Json.num(m, "after_ms", 0), MAX_REDIRECT_WAIT_MS));
            return new RedirectException(Collections.unmodifiableList(addrs), after);
        }
    }
}
