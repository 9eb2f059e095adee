package io.lcpush.sdk;

import static io.lcpush.sdk.TestRunner.check;
import static io.lcpush.sdk.TestRunner.eq;

import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

/**
 * TLS against a local TLS gateway whose self-signed certificate (made with
 * the JDK's keytool, SAN dns:localhost only) is trusted through a custom
 * TrustManager: hostname verification, pins, and the next address after a
 * pin mismatch.
 */
final class TlsTest {
    private TlsTest() {}

    static void register(TestRunner r) {
        r.add("tls: custom trust, hostname verification, pins", TlsTest::run);
    }

    private static KeyStore keystore(File dir, String alias) throws Exception {
        File ks = new File(dir, alias + ".p12");
        Process p = new ProcessBuilder(System.getProperty("java.home") + "/bin/keytool", "-genkeypair", "-keyalg", "EC",
                "-groupname", "secp256r1", "-alias", alias, "-dname", "CN=localhost", "-ext", "san=dns:localhost",
                "-validity", "2", "-storetype", "PKCS12", "-keystore", ks.getPath(), "-storepass", "changeit")
                .redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        check(p.waitFor() == 0, "keytool: " + new String(out, java.nio.charset.StandardCharsets.UTF_8));
        KeyStore k = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(ks)) {
            k.load(in, "changeit".toCharArray());
        }
        return k;
    }

    /** A TLS gateway on loopback that answers one AUTH per connection with AUTH_OK. */
    private static SSLServerSocket gateway(KeyStore ks) throws Exception {
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, "changeit".toCharArray());
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread t = new Thread(() -> {
            while (!ss.isClosed()) {
                try {
                    Socket s = ss.accept();
                    new Thread(() -> {
                        try (Socket c = s) {
                            Frame a = Frame.read(c.getInputStream(), 1 << 20);
                            Map<String, Object> ok = new LinkedHashMap<>();
                            ok.put("hb", 30);
                            ok.put("room", "tls-room");
                            c.getOutputStream().write(Frame.json(Frame.AUTH_OK, a.seq, a.app, ok).encode());
                            while (true) Frame.read(c.getInputStream(), 1 << 20);
                        } catch (Exception e) {
                            // handshake refused by the client, or closed
                        }
                    }).start();
                } catch (Exception e) {
                    return;
                }
            }
        });
        t.setDaemon(true);
        t.start();
        return ss;
    }

    private static void run() throws Exception {
        File dir = Files.createTempDirectory("lcpush-tls").toFile();
        KeyStore a = keystore(dir, "a"), b = keystore(dir, "b");
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        trust.setCertificateEntry("a", a.getCertificate("a"));
        trust.setCertificateEntry("b", b.getCertificate("b"));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        TrustManager tm = null;
        for (TrustManager m : tmf.getTrustManagers()) if (m instanceof X509TrustManager) tm = m;
        Certificate certB = b.getCertificate("b");
        String pinB = Conn.pinOf(certB);
        check(pinB.startsWith("sha256/") && Base64.getDecoder().decode(pinB.substring(7)).length == 32, pinB);
        try (SSLServerSocket ga = gateway(a); SSLServerSocket gb = gateway(b)) {
            String la = "localhost:" + ga.getLocalPort(), lb = "localhost:" + gb.getLocalPort();
            // Trusted, and the name matches: connected.
            connectsTo(Config.builder().transport("tls").addr(la).trustManager(tm), la);
            // The name does not match the certificate (SAN is localhost only): refused, then the next address.
            connectsTo(Config.builder().transport("tls").addr("127.0.0.1:" + ga.getLocalPort()).addr(la).trustManager(tm), la);
            // Pinned to b's key: a fails the pin, b passes.
            connectsTo(Config.builder().transport("tls").addr(la).addr(lb).trustManager(tm).pin(pinB), lb);
            // tls:// on a tcp client is dialed with TLS.
            connectsTo(Config.builder().addr("tls://" + la).trustManager(tm), "tls://" + la);
        }
    }

    private static void connectsTo(Config.Builder b, String want) throws Exception {
        ClientTest.Rec rec = new ClientTest.Rec();
        LcpushClient c = new LcpushClient(b.uid("u").token("t").app(1).backoff(20, 50).build(), rec);
        try {
            c.connect();
            String ev = rec.await("state connected");
            eq("state connected " + want, ev, "connected to");
            eq("tls-room", c.room(), "room");
        } finally {
            c.close();
        }
    }
}
