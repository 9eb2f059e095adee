package io.lcpush.sdk;

/** A gateway address: host, port and whether it is dialed with TLS. */
final class Endpoint {
    final String host;
    final int port;
    final boolean tls;

    private Endpoint(String host, int port, boolean tls) {
        this.host = host;
        this.port = port;
        this.tls = tls;
    }

    /** host:port (dialed with the default transport), [v6]:port, tcp://host:port or tls://host:port. */
    static Endpoint parse(String addr, String defTransport) {
        boolean tls = "tls".equals(defTransport);
        String a = addr == null ? "" : addr;
        if (a.startsWith("tcp://")) {
            tls = false;
            a = a.substring(6);
        } else if (a.startsWith("tls://")) {
            tls = true;
            a = a.substring(6);
        } else if (a.contains("://")) {
            throw new IllegalArgumentException("address " + addr + ": unsupported scheme (tcp, tls)");
        }
        if (a.endsWith("/")) a = a.substring(0, a.length() - 1);
        int colon = a.lastIndexOf(':');
        if (colon <= 0) throw new IllegalArgumentException("address " + addr + " is not host:port");
        String host = a.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
        int port;
        try {
            port = Integer.parseInt(a.substring(colon + 1));
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port <= 0 || port > 65535 || host.isEmpty()) throw new IllegalArgumentException("address " + addr + " is not host:port");
        return new Endpoint(host, port, tls);
    }

    /** host:port as the dispatcher's failed list wants it. */
    static String hostPort(String addr) {
        int s = addr.indexOf("://");
        return s >= 0 ? addr.substring(s + 3) : addr;
    }
}
