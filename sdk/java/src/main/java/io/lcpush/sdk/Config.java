package io.lcpush.sdk;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import javax.net.ssl.HostnameVerifier;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManager;

/** Immutable client configuration; build it with {@link #builder()}. */
public final class Config {
    public final List<String> dispatchUrls;
    public final List<String> addrs;
    public final String transport;
    public final int app;
    public final String uid;
    public final String token;
    public final TokenProvider tokenProvider;
    public final String device;
    public final String net;
    public final String sdkName;
    public final int heartbeatSeconds;
    public final boolean manualAck;
    public final long backoffMinMs, backoffMaxMs;
    public final int dedupWindow;
    public final int connectTimeoutMs;
    public final int requestTimeoutMs;
    public final List<String> pins;
    public final SSLSocketFactory sslSocketFactory;
    public final TrustManager trustManager;
    public final HostnameVerifier hostnameVerifier;

    private Config(Builder b) {
        dispatchUrls = Collections.unmodifiableList(new ArrayList<>(b.dispatchUrls));
        addrs = Collections.unmodifiableList(new ArrayList<>(b.addrs));
        transport = b.transport;
        app = b.app;
        uid = b.uid;
        token = b.token;
        tokenProvider = b.tokenProvider;
        device = b.device;
        net = b.net == null ? "" : b.net;
        sdkName = b.sdkName;
        heartbeatSeconds = b.heartbeatSeconds;
        manualAck = b.manualAck;
        backoffMinMs = b.backoffMinMs;
        backoffMaxMs = Math.max(b.backoffMinMs, b.backoffMaxMs);
        dedupWindow = b.dedupWindow;
        connectTimeoutMs = b.connectTimeoutMs;
        requestTimeoutMs = b.requestTimeoutMs;
        pins = Collections.unmodifiableList(new ArrayList<>(b.pins));
        sslSocketFactory = b.sslSocketFactory;
        trustManager = b.trustManager;
        hostnameVerifier = b.hostnameVerifier;
    }

    public static Builder builder() {
        return new Builder();
    }

    public static final class Builder {
        private final List<String> dispatchUrls = new ArrayList<>();
        private final List<String> addrs = new ArrayList<>();
        private String transport = "tcp";
        private int app;
        private String uid;
        private String token;
        private TokenProvider tokenProvider;
        private String device;
        private String net;
        private String sdkName = "lcpush-java/0.1";
        private int heartbeatSeconds = 30;
        private boolean manualAck;
        private long backoffMinMs = 500, backoffMaxMs = 30_000;
        private int dedupWindow = 1024;
        private int connectTimeoutMs = 5000;
        private int requestTimeoutMs = 15_000;
        private final List<String> pins = new ArrayList<>();
        private SSLSocketFactory sslSocketFactory;
        private TrustManager trustManager;
        private HostnameVerifier hostnameVerifier;

        /** A dispatcher base URL (http or https); several are tried in order. */
        public Builder dispatch(String url) { dispatchUrls.add(url); return this; }
        /** Static gateway addresses host:port (or tcp://host:port, tls://host:port), tried after dispatched ones. */
        public Builder addrs(List<String> a) { addrs.addAll(a); return this; }
        public Builder addr(String a) { addrs.add(a); return this; }
        /** "tcp" (default) or "tls". */
        public Builder transport(String t) { transport = t; return this; }
        /** The app (u32) the login's token was issued for. */
        public Builder app(int a) { app = a; return this; }
        public Builder uid(String u) { uid = u; return this; }
        /** A static token: ERROR bad_token for it is final. */
        public Builder token(String t) { token = t; return this; }
        public Builder tokenProvider(TokenProvider p) { tokenProvider = p; return this; }
        public Builder device(String d) { device = d; return this; }
        /** Network type (wifi, 4g, ...), sent to the dispatcher and in AUTH; dispatcher answers are cached per net. */
        public Builder net(String n) { net = n; return this; }
        public Builder sdkName(String n) { sdkName = n; return this; }
        /** Requested heartbeat; the server's AUTH_OK value is what is used. */
        public Builder heartbeatSeconds(int s) { heartbeatSeconds = s; return this; }
        public Builder manualAck(boolean m) { manualAck = m; return this; }
        public Builder backoff(long minMs, long maxMs) { backoffMinMs = minMs; backoffMaxMs = maxMs; return this; }
        /** How many recent message ids are remembered for dedup (default 1024). */
        public Builder dedupWindow(int n) { dedupWindow = n; return this; }
        /** Bounds a dial, TLS handshake and AUTH together, and one dispatch call (default 5 s). */
        public Builder connectTimeoutMs(int ms) { connectTimeoutMs = ms; return this; }
        /** A bind/unbind/upstream reply not received within this fails with code "timeout" (default 15 s). */
        public Builder requestTimeoutMs(int ms) { requestTimeoutMs = ms; return this; }
        /** A public-key pin "sha256/&lt;base64 of SHA-256 of the SubjectPublicKeyInfo DER&gt;". */
        public Builder pin(String p) { pins.add(p); return this; }
        public Builder pins(List<String> p) { pins.addAll(p); return this; }
        /** Custom TLS: a factory (e.g. from your own SSLContext). */
        public Builder sslSocketFactory(SSLSocketFactory f) { sslSocketFactory = f; return this; }
        /** Custom TLS trust (e.g. a private CA); ignored when sslSocketFactory is set. */
        public Builder trustManager(TrustManager tm) { trustManager = tm; return this; }
        /** Checks the server name after the handshake instead of the JSSE endpoint identification. */
        public Builder hostnameVerifier(HostnameVerifier v) { hostnameVerifier = v; return this; }

        /** Validates and builds. Throws IllegalArgumentException for a config the SDK refuses. */
        public Config build() {
            if (uid == null || uid.isEmpty()) throw new IllegalArgumentException("uid is empty");
            if ((token == null || token.isEmpty()) && tokenProvider == null)
                throw new IllegalArgumentException("need a token or a token provider");
            if (dispatchUrls.isEmpty() && addrs.isEmpty()) throw new IllegalArgumentException("need dispatch URLs or addrs");
            for (String u : dispatchUrls)
                if (u == null || !(u.startsWith("http://") || u.startsWith("https://")))
                    throw new IllegalArgumentException("dispatch URL " + u + " is not http(s)");
            if (!"tcp".equals(transport) && !"tls".equals(transport))
                throw new IllegalArgumentException("unsupported transport " + transport + " (tcp, tls)");
            for (String a : addrs) Endpoint.parse(a, transport); // throws on a bad one
            for (String p : pins) {
                // 32 bytes in standard base64: 43 characters and one '='.
                if (p == null || !p.matches("sha256/[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="))
                    throw new IllegalArgumentException("pin " + p + " is not sha256/<base64 of a SHA-256>");
            }
            if (!pins.isEmpty() && !"tls".equals(transport)) throw new IllegalArgumentException("pins need transport tls");
            if (heartbeatSeconds <= 0) heartbeatSeconds = 30;
            if (backoffMinMs <= 0) backoffMinMs = 500;
            if (backoffMaxMs <= 0) backoffMaxMs = 30_000;
            if (dedupWindow <= 0) dedupWindow = 1024;
            if (connectTimeoutMs <= 0) connectTimeoutMs = 5000;
            if (requestTimeoutMs <= 0) requestTimeoutMs = 15_000;
            return new Config(this);
        }
    }
}
