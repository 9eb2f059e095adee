package io.lcpush.sdk;

/**
 * Supplies a fresh token before each connect pass (it runs on the client's
 * reader thread, so it may block, e.g. on an HTTP call to the product's back
 * end). With a provider, ERROR bad_token is retried with backoff after
 * calling it again; only a static token makes bad_token final.
 */
@FunctionalInterface
public interface TokenProvider {
    String token() throws Exception;
}
