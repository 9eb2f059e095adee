package io.lcpush.sdk;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** A scripted gateway for client tests: accept, expect frames (PINGs skipped), send frames. */
final class FakeServer implements AutoCloseable {
    final ServerSocket ln;

    FakeServer() throws IOException {
        ln = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    }

    String addr() {
        return "127.0.0.1:" + ln.getLocalPort();
    }

    Peer accept(int timeoutMs) throws IOException {
        ln.setSoTimeout(timeoutMs);
        return new Peer(ln.accept());
    }

    /** True when no client connects within ms. */
    boolean quiet(int ms) throws IOException {
        ln.setSoTimeout(ms);
        try {
            ln.accept().close();
            return false;
        } catch (SocketTimeoutException e) {
            return true;
        }
    }

    @Override
    public void close() throws IOException {
        ln.close();
    }

    static final class Peer implements AutoCloseable {
        final Socket s;
        final InputStream in;

        Peer(Socket s) throws IOException {
            this.s = s;
            this.in = s.getInputStream();
        }

        /** The next frame that is not a PING, within ms. */
        Frame expect(int op, int ms) throws IOException {
            s.setSoTimeout(ms);
            while (true) {
                Frame f = Frame.read(in, 1 << 20);
                if (f.op == Frame.PING && op != Frame.PING) continue;
                if (f.op != op) throw new AssertionError("got op " + f.op + ", want " + op);
                return f;
            }
        }

        /** AUTH then AUTH_OK (hb 30, room); returns the AUTH body. */
        Map<String, Object> login(String room) throws IOException {
            Frame a = expect(Frame.AUTH, 5000);
            Map<String, Object> ok = new LinkedHashMap<>();
            ok.put("hb", 30);
            ok.put("room", room);
            ok.put("server_time", 1700000000);
            send(Frame.json(Frame.AUTH_OK, a.seq, a.app, ok));
            return Frame.jsonBody(a.body);
        }

        void send(Frame f) throws IOException {
            s.getOutputStream().write(f.encode());
        }

        void sendJson(int op, int seq, String json) throws IOException {
            send(new Frame(op, 0, seq, 0, json.getBytes(StandardCharsets.UTF_8)));
        }

        /** True when the client closes the connection within ms (frames before it are skipped). */
        boolean closedWithin(int ms) throws IOException {
            s.setSoTimeout(ms);
            try {
                while (true) Frame.read(in, 1 << 20);
            } catch (SocketTimeoutException e) {
                return false;
            } catch (IOException e) {
                return true;
            }
        }

        void drop() throws IOException {
            s.close();
        }

        @Override
        public void close() throws IOException {
            s.close();
        }
    }
}
