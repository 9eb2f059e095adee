#!/usr/bin/env python3
"""Writes the conformance vectors (frames.json, tokens.json) from PROTOCOL.md.

This is a second implementation of the wire format, written from the
protocol text and not from the Go code, so that every SDK's tests (Go, and
the others as they come) check their codec against bytes nobody's codec
produced. Run it from this folder: python3 gen.py
"""
import hashlib, hmac, json, struct

MAX_LEN = 65536 + 12  # the server's default maximum Len


def frame(op, seq=0, app=0, flags=0, body=b"", ver=1):
    return struct.pack(">IBBHII", 12 + len(body), ver, op, flags, seq, app) + body


def js(v):
    return json.dumps(v, separators=(",", ":")).encode()


frames = []


def add(name, op, seq, app, flags, body, meaning, **extra):
    raw = frame(op, seq, app, flags, body)
    v = {"name": name, "hex": raw.hex(), "op": op, "seq": seq, "app": app, "flags": flags,
         "body_hex": body.hex(), "meaning": meaning}
    v.update(extra)
    frames.append(v)


auth = {"uid": "alice", "token": "1893456000.00", "hb": 30, "sdk": "conformance"}
add("auth", 0x01, 1, 7, 0, js(auth), "AUTH for app 7", json=auth)
add("auth_ok", 0x02, 1, 7, 0, js({"hb": 30, "room": "room-1", "server_time": 1700000000}),
    "AUTH_OK answering Seq 1", json={"hb": 30, "room": "room-1", "server_time": 1700000000})
add("ping", 0x03, 2, 0, 0, b"", "PING, empty body")
add("pong", 0x04, 2, 0, 0, b"", "PONG answering Seq 2")
mid = 0x0558_9F12_3456_789A
add("push_qos1", 0x05, 0, 7, 1, struct.pack(">Q", mid) + b"hello", "PUSH QoS 1 (ACK_REQUIRED), Seq 0",
    msg_id=str(mid), payload_hex=b"hello".hex(), qos=1)
add("push_qos0_empty", 0x05, 0, 3, 0, struct.pack(">Q", 1), "PUSH QoS 0 with an empty payload",
    msg_id="1", payload_hex="", qos=0)
ids = [mid, mid + 1, 18446744073709551615]
add("ack_batch", 0x06, 3, 7, 0, struct.pack(">H", len(ids)) + b"".join(struct.pack(">Q", i) for i in ids),
    "ACK of three ids (the largest u64 included)", ack_ids=[str(i) for i in ids])
add("upstream_reply", 0x07, 4, 9, 2, struct.pack(">H", 513) + b"\x00\xff", "UPSTREAM type 513, REPLY_WANTED",
    upstream_type=513, payload_hex="00ff")
add("upstream_ok", 0x08, 4, 9, 0, b"", "UPSTREAM_OK answering Seq 4")
add("bind", 0x09, 5, 8, 0, js({"token": "1893456000.ff"}), "BIND app 8", json={"token": "1893456000.ff"})
add("bind_ok", 0x0A, 5, 8, 0, b"", "BIND_OK")
add("unbind", 0x0B, 6, 8, 0, b"", "UNBIND app 8")
add("unbind_ok", 0x0C, 6, 8, 0, b"", "UNBIND_OK")
add("kick", 0x0D, 0, 0, 0, js({"code": 1, "reason": "login_elsewhere"}), "KICK 1 login_elsewhere",
    json={"code": 1, "reason": "login_elsewhere"})
rd = {"addrs": ["10.0.0.2:7000", "10.0.0.3:7000"], "after_ms": 3000, "reason": "drain"}
add("redirect", 0x0E, 0, 0, 0, js(rd), "REDIRECT to two rooms within 3 s", json=rd)
er = {"code": "bad_token", "message": "token expired"}
add("error", 0x0F, 1, 7, 0, js(er), "ERROR bad_token answering Seq 1", json=er)
add("flags_ignored", 0x03, 9, 0, 0xFFFC, b"", "PING with unknown flag bits set: ignored on receipt")

# Inputs a decoder must refuse, with the ERROR code the server answers.
bad = [
    {"name": "len_below_12", "hex": struct.pack(">I", 11).hex() + "00" * 11, "error": "bad_frame",
     "meaning": "Len 11 < 12"},
    {"name": "len_over_max", "hex": struct.pack(">I", MAX_LEN + 1).hex(), "error": "frame_too_large",
     "meaning": "Len over the default maximum; refused from the 4 Len bytes alone, before any body"},
    {"name": "len_4gib", "hex": "ffffffff", "error": "frame_too_large", "meaning": "Len 2^32-1"},
    {"name": "version_2", "hex": frame(0x03, 1, ver=2).hex(), "error": "bad_frame", "meaning": "Ver 2"},
    {"name": "ack_count_short", "hex": frame(0x06, 1, 7, 0, struct.pack(">H", 2) + struct.pack(">Q", 5)).hex(),
     "error": "bad_frame", "meaning": "ACK announcing 2 ids with 1 present"},
    {"name": "push_short_body", "hex": frame(0x05, 0, 7, 0, b"\x00\x01").hex(), "error": "bad_frame",
     "meaning": "PUSH body shorter than its MsgID"},
]

with open("frames.json", "w") as f:
    json.dump({"max_len": MAX_LEN, "frames": frames, "malformed": bad}, f, indent=1)
    f.write("\n")

tokens = []
for secret, app, uid, exp in [
    ("demo-secret-app-1-change-me", 1, "alice", 1893456000),
    ("s3cr3t", 42, "user:with|pipe", 1700000000),
    ("", 0, "", 0),
    ("ключ", 7, "ユーザー", 4102444800),
]:
    msg = f"{app}|{uid}|{exp}".encode()
    tok = f"{exp}." + hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    tokens.append({"secret": secret, "app": app, "uid": uid, "expiry": exp, "token": tok})
with open("tokens.json", "w") as f:
    json.dump({"tokens": tokens}, f, indent=1, ensure_ascii=False)
    f.write("\n")

# Session scripts: what the server sends and what a client must answer.
# A client runs with the "client" settings against a server that plays the
# steps in order: "expect" (the client's next frame: op, and the fields
# given; "json" is a subset of the body), "send" (frame bytes; "reply": the
# Seq is set to the Seq of the client frame last expected), "expect_close"
# (the client closes the connection and does not come back within
# "quiet_ms").
TOK = "1893456000.0e088826b7566f261ecfda80248bae57b02d9a5b1b38c1cdffa0f813c3b3c461"
client = {"app": 1, "uid": "alice", "token": TOK, "hb": 1}
login = [
    {"do": "expect", "op": 0x01, "app": 1, "json": {"uid": "alice", "token": TOK}},
    {"do": "send", "reply": True, "hex": frame(0x02, 0, 1, 0, js({"hb": 1, "room": "room-1", "server_time": 1700000000})).hex()},
]
sessions = [
    {"name": "login_push_ack", "meaning": "AUTH, AUTH_OK, a QoS 1 PUSH is delivered and ACKed",
     "client": client, "deliver": [{"id": str(mid), "payload_hex": b"hello".hex(), "qos": 1}],
     "steps": login + [
         {"do": "send", "hex": frame(0x05, 0, 1, 1, struct.pack(">Q", mid) + b"hello").hex()},
         {"do": "expect", "op": 0x06, "skip": [0x03], "ack_ids": [str(mid)]},
     ]},
    {"name": "heartbeat", "meaning": "with hb 1 the client sends PING within about a second and takes the PONG",
     "client": client, "steps": login + [
         {"do": "expect", "op": 0x03, "within_ms": 2500},
         {"do": "send", "reply": True, "hex": frame(0x04).hex()},
         {"do": "expect", "op": 0x03, "within_ms": 2500},
     ]},
    {"name": "kick_is_final", "meaning": "KICK 1 login_elsewhere: the client closes and does not reconnect",
     "client": client, "steps": login + [
         {"do": "send", "hex": frame(0x0D, 0, 0, 0, js({"code": 1, "reason": "login_elsewhere"})).hex()},
         {"do": "expect_close", "skip": [0x03], "quiet_ms": 700},
     ]},
    {"name": "bad_token_is_final", "meaning": "ERROR bad_token answering AUTH: the client stops",
     "client": client, "steps": [
         {"do": "expect", "op": 0x01, "app": 1},
         {"do": "send", "reply": True, "hex": frame(0x0F, 0, 1, 0, js({"code": "bad_token", "message": "token expired"})).hex()},
         {"do": "expect_close", "quiet_ms": 700},
     ]},
]
with open("sessions.json", "w") as f:
    json.dump({"sessions": sessions}, f, indent=1)
    f.write("\n")
