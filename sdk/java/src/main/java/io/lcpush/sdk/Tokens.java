package io.lcpush.sdk;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Device tokens (docs/protocol.md, "Tokens"):
 * {@code expiry "." hex(HMAC-SHA256(secret, app "|" uid "|" expiry))}.
 * Signing belongs on a product's back end, which holds the app secret; this
 * helper is for tests and tools, never ship a secret in an app.
 */
public final class Tokens {
    private Tokens() {}

    /** app is a u32 (taken unsigned), expiry unix seconds. */
    public static String sign(String secret, int app, String uid, long expiry) {
        String exp = Long.toString(expiry);
        String msg = (app & 0xFFFFFFFFL) + "|" + uid + "|" + exp;
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            byte[] key = secret.getBytes(StandardCharsets.UTF_8);
            // An empty key is valid HMAC but SecretKeySpec refuses it: HMAC pads keys with zeros, so one zero byte is the same key.
            mac.init(new SecretKeySpec(key.length == 0 ? new byte[1] : key, "HmacSHA256"));
            byte[] sum = mac.doFinal(msg.getBytes(StandardCharsets.UTF_8));
            StringBuilder b = new StringBuilder(exp.length() + 65).append(exp).append('.');
            for (byte x : sum) b.append(Character.forDigit((x >> 4) & 0xF, 16)).append(Character.forDigit(x & 0xF, 16));
            return b.toString();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }
}
