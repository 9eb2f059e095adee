package io.lcpush.sdk;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.cert.Certificate;
import java.util.Collections;
import java.util.List;
import javax.net.ssl.HostnameVerifier;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManager;

/** One transport connection (raw TCP or TLS) carrying frames. */
final class Conn {
    final String addr;
    final Socket sock;
    private final InputStream in;
    private final OutputStream out;
    private final Object wlock = new Object();
    private volatile boolean closed;
    int hb; // negotiated heartbeat, seconds
    String room;

    private static final boolean ANDROID = "Dalvik".equals(System.getProperty("java.vm.name"));

    private Conn(String addr, Socket sock) throws IOException {
        this.addr = addr;
        this.sock = sock;
        this.in = new BufferedInputStream(sock.getInputStream(), 16 << 10);
        this.out = sock.getOutputStream();
    }

    /**
     * Dials addr within timeoutMs (TCP connect, then the TLS handshake, whose
     * reads the socket timeout bounds). holder receives the socket first so
     * that close() of the client can abort a dial in progress.
     */
    static Conn dial(String addr, Config cfg, int timeoutMs, java.util.function.Consumer<Socket> holder) throws IOException {
        Endpoint ep = Endpoint.parse(addr, cfg.transport);
        if (!cfg.pins.isEmpty() && !ep.tls) throw new IOException("address " + addr + " is not TLS and pins are set: refused");
        Socket raw = new Socket();
        holder.accept(raw);
        try {
            raw.setTcpNoDelay(true);
            raw.connect(new InetSocketAddress(ep.host, ep.port), timeoutMs);
            raw.setSoTimeout(timeoutMs);
            if (!ep.tls) return new Conn(addr, raw);
            SSLSocket s = (SSLSocket) sslFactory(cfg).createSocket(raw, ep.host, ep.port, true);
            holder.accept(s);
            SSLParameters p = s.getSSLParameters();
            if (!isIp(ep.host)) p.setServerNames(Collections.singletonList(new SNIHostName(ep.host)));
            if (cfg.hostnameVerifier == null) p.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(p);
            s.startHandshake();
            // Android's providers have not always applied endpoint identification
            // on sockets; its default HostnameVerifier is the real check there
            // (on the JVM the default one refuses everything, so it is not used).
            HostnameVerifier hv = cfg.hostnameVerifier != null ? cfg.hostnameVerifier
                    : ANDROID ? HttpsURLConnection.getDefaultHostnameVerifier() : null;
            if (hv != null && !hv.verify(ep.host, s.getSession()))
                throw new IOException("tls: " + ep.host + " does not match the server's certificate");
            if (!cfg.pins.isEmpty()) checkPins(s.getSession().getPeerCertificates(), cfg.pins, ep.host);
            return new Conn(addr, s);
        } catch (IOException | RuntimeException e) {
            try {
                raw.close();
            } catch (IOException ignored) {
                // already failing
            }
            throw e;
        }
    }

    private static SSLSocketFactory sslFactory(Config cfg) throws IOException {
        if (cfg.sslSocketFactory != null) return cfg.sslSocketFactory;
        if (cfg.trustManager == null) return (SSLSocketFactory) SSLSocketFactory.getDefault();
        try {
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(null, new TrustManager[] {cfg.trustManager}, null);
            return ctx.getSocketFactory();
        } catch (GeneralSecurityException e) {
            throw new IOException("tls: " + e, e);
        }
    }

    private static boolean isIp(String h) {
        return h.indexOf(':') >= 0 || h.matches("[0-9.]+");
    }

    /** The pin of a certificate: sha256/ + base64(SHA-256(SubjectPublicKeyInfo DER)). */
    static String pinOf(Certificate c) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(c.getPublicKey().getEncoded());
            return "sha256/" + base64(h);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    private static final char[] B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".toCharArray();

    /** Standard base64 with padding (java.util.Base64 is on Android only from API 26). */
    static String base64(byte[] b) {
        StringBuilder s = new StringBuilder((b.length + 2) / 3 * 4);
        for (int i = 0; i < b.length; i += 3) {
            int n = (b[i] & 0xFF) << 16 | (i + 1 < b.length ? (b[i + 1] & 0xFF) << 8 : 0) | (i + 2 < b.length ? b[i + 2] & 0xFF : 0);
            s.append(B64[n >>> 18 & 63]).append(B64[n >>> 12 & 63]);
            s.append(i + 1 < b.length ? B64[n >>> 6 & 63] : '=').append(i + 2 < b.length ? B64[n & 63] : '=');
        }
        return s.toString();
    }

    /** Any certificate of the (already verified) chain with a pinned key passes. */
    static void checkPins(Certificate[] chain, List<String> pins, String host) throws IOException {
        for (Certificate c : chain) if (pins.contains(pinOf(c))) return;
        throw new IOException("tls: " + host + " presented " + (chain.length > 0 ? pinOf(chain[0]) : "no certificate")
                + ", which matches no pin");
    }

    Frame read(int maxLen) throws IOException {
        return Frame.read(in, maxLen);
    }

    /** Writes one frame; a failure closes the socket so the reader notices and reconnects. */
    void write(Frame f) throws IOException {
        byte[] b = f.encode();
        synchronized (wlock) {
            if (closed) throw new IOException("connection closed");
            try {
                out.write(b);
                out.flush();
            } catch (IOException e) {
                close();
                throw e;
            }
        }
    }

    void close() {
        closed = true;
        try {
            sock.close();
        } catch (IOException ignored) {
            // nothing left to release
        }
    }

    boolean isClosed() {
        return closed;
    }
}
