package io.lcpush.sdk;

import java.util.HashMap;
import java.util.Map;

/** The last size message ids and whether each was acked: a ring plus a map, bounded memory. */
final class Dedup {
    private final long[] ring;
    private final Map<Long, Boolean> seen;
    private int next, n;

    Dedup(int size) {
        ring = new long[size];
        seen = new HashMap<>(size * 2);
    }

    /** Returns null for a new id (now remembered), else whether the first copy was acked. */
    synchronized Boolean add(long id) {
        Boolean acked = seen.get(id);
        if (acked != null) return acked;
        if (n == ring.length) seen.remove(ring[next]);
        else n++;
        ring[next] = id;
        next = (next + 1) % ring.length;
        seen.put(id, Boolean.FALSE);
        return null;
    }

    synchronized void markAcked(long[] ids) {
        for (long id : ids) if (seen.containsKey(id)) seen.put(id, Boolean.TRUE);
    }

    synchronized int size() {
        return n;
    }
}
