#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (committed; rerun
only to change the seeds). Each file is one input as its fuzz target takes
it: a request body, or a stream entry; `body` inputs start with two bytes
that pick the encoding and the cap (see fuzz/src/props/body.rs)."""

import gzip
import json
import os
import random
import shutil
import subprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = random.Random(8)


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def deep(n, leaf="1"):
    return '{"a":' * n + leaf + "}" * n


def mixed(n):
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./é€"
    return "".join(rng.choice(alphabet) for _ in range(n))


# ---- event: one posted error
E = {
    "ok-minimal.json": '{"message":"boom"}',
    "ok-full.json": json.dumps({
        "level": "critical", "message": "db timeout after 30s", "stack_trace": "at q (db.rs:10)\nat main",
        "context": {"user_id": 42, "tags": ["a", "b"], "nested": {"ok": True, "none": None, "f": 1.5e3}},
        "source": "api", "environment": "prod", "url": "/orders/7?page=2", "fingerprint": "orders-timeout"}),
    "ok-pii.json": json.dumps({
        "message": "mail bob@example.com card 4111 1111 1111 1111 token=abc123",
        "stack_trace": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
        "url": "/login?password=hunter2&next=/",
        "context": {"Password": "x", "api_key": {"deep": 1}, "list": ["a@b.io", 4111111111111111],
                    "note": "AKIAABCDEFGHIJKLMNOP", "secret": None, "card_number": "4111-1111-1111-1111"}}),
    "ok-escapes.json": r'{"message":"line\nbreak \u00e9 \ud83d\ude00 \"q\"","context":{"pass\u0077ord":"p","a\\b":"x\u0040y.com","k":"\/"}}',
    "ok-whitespace.json": ' \n{ "message" : "spaced" , "context" : { "b" : [ ] , "a" : { } , "c" : [ 1.50 , 2e3 , -0 ] } }\n ',
    "ok-level-warn.json": '{"message":"m","level":"WARN"}',
    "ok-context-null.json": '{"message":"m","context":null}',
    "ok-unknown-fields.json": '{"message":"m","extra":{"x":[1,2,{"y":null}]},"n":1e400}',
    "ok-dup-context-key.json": '{"message":"m","context":{"token":"a","token":"b","x":1,"x":2}}',
    "ok-fingerprint-256.json": json.dumps({"message": "m", "fingerprint": "f" * 256}),
    "bad-fingerprint-257.json": json.dumps({"message": "m", "fingerprint": "f" * 257}),
    "bad-level.json": '{"message":"m","level":"loud"}',
    "bad-no-message.json": '{"level":"error"}',
    "bad-blank-message.json": '{"message":" \\t\\n "}',
    "bad-message-number.json": '{"message":5}',
    "bad-context-array.json": '{"message":"m","context":[1]}',
    "bad-dup-field.json": '{"message":"a","message":"b"}',
    "bad-truncated.json": '{"message":"a","context":{"k":',
    "bad-not-utf8.json": b'{"message":"\xff\xfe"}',
    "bad-top-level-array.json": "[1]",
    # issue 8's poison inputs
    "poison-nul-message.json": '{"message":"nul \\u0000 here"}',
    "poison-nul-context.json": '{"message":"x","context":{"k":"a\\u0000b"}}',
    "poison-nul-context-key.json": '{"message":"x","context":{"a\\u0000":1}}',
    "poison-source-3000.json": json.dumps({"message": "x", "source": mixed(3000)}),
    "poison-1e400.json": '{"message":"x","context":{"n":1e400}}',
    "poison-deep-200.json": '{"message":"x","context":' + deep(200) + "}",
    "poison-deep-999.json": '{"message":"x","context":' + deep(998, "[1]") + "}",
    "poison-lone-surrogate.json": '{"message":"x","context":{"k":"\\ud800"}}',
    "poison-nul-everywhere.json": '{"message":"\\u0000","stack_trace":"a\\u0000","source":"s\\u0000","environment":"e\\u0000",'
    '"url":"/\\u0000","fingerprint":"f\\u0000","context":{"\\u0000k":["\\u0000",{"password\\u0000":"\\u0000"}]}}',
    "poison-numbers.json": '{"message":"x","context":{"max":1.7976931348623157e308,"over":-1e309,"big":' + "9" * 400 + ',"tiny":1e-400}}',
    # the JSON depth limit (storage/src/limits.rs): the event's object and 63 more fit, 64 do not
    "limit-depth-64.json": '{"message":"x","context":' + deep(63) + "}",
    "limit-depth-65.json": '{"message":"x","context":' + deep(64) + "}",
    "limit-source-255.json": json.dumps({"message": "x", "source": "s" * 255, "environment": "e" * 255}),
    "limit-source-256.json": json.dumps({"message": "x", "source": "s" * 256}),
    "poison-deep-30000.json": '{"message":"x","context":' + deep(30000) + "}",
}
for name, data in E.items():
    put("event", name, data)

# ---- batch: a JSON array or NDJSON
B = {
    "array-two.json": '[{"message":"a"}, {"message":"b","level":"info","context":{"password":"p"}}]',
    "array-mixed.json": '[{"message":"a"}, 1, "x", null, {"level":"loud","message":"m"}, {}]',
    "array-empty.json": "[]",
    "array-malformed.json": '[{"message":"a"},',
    "ndjson-two.ndjson": '{"message":"a"}\n{"message":"b","source":"job"}\n',
    "ndjson-crlf-bad-line.ndjson": '{"message":"a"}\r\n\r\n{bad\r\n{"message":"c"}\r\n',
    "ndjson-one-line.ndjson": '{"message":"only one"}',
    "blank.txt": "  \n\t ",
    "not-utf8.ndjson": b'{"message":"a"}\n{"message":"\xff"}\n',
    "too-many-1001.ndjson": '{"message":"m"}\n' * 1001,
    "poison-array.json": "[" + ",".join([
        '{"message":"nul \\u0000 here"}', '{"message":"x","context":{"k":"a\\u0000b"}}',
        json.dumps({"message": "x", "source": mixed(3000)}), '{"message":"x","context":{"n":1e400}}',
        '{"message":"x","context":' + deep(200) + "}", '{"message":"fine"}']) + "]",
    "poison-ndjson.ndjson": "\n".join([
        '{"message":"nul \\u0000 here"}', '{"message":"x","context":{"k":"a\\u0000b"}}',
        '{"message":"x","context":{"n":1e400}}', '{"message":"fine"}']) + "\n",
    "poison-deep-30000.ndjson": '{"message":"x","context":' + deep(30000) + "}\n" + '{"message":"fine"}\n',
}
for name, data in B.items():
    put("batch", name, data)

# ---- tracking: start and complete bodies (each input goes through both)
T = {
    "start-ok.json": '{"script_name":"nightly vacuum","script_type":"maintenance"}',
    "start-no-type.json": '{"script_name":"  backfill  "}',
    "start-bad-type.json": '{"script_name":"x","script_type":"1abc"}',
    "start-type-51.json": json.dumps({"script_name": "x", "script_type": "A" * 51}),
    "start-name-500.json": json.dumps({"script_name": "é" * 500}),
    "start-name-501.json": json.dumps({"script_name": "n" * 501}),
    "start-blank-name.json": '{"script_name":" \\t "}',
    "start-nul-name.json": '{"script_name":"a\\u0000b"}',
    "complete-ok.json": '{"operation_id":"0123456789abcdef0123456789ABCDEF","success":false,"error_message":"boom"}',
    "complete-default.json": '{"operation_id":" 0123456789abcdef0123456789abcdef "}',
    "complete-short-id.json": '{"operation_id":"abc"}',
    "complete-blank-error.json": '{"operation_id":"0123456789abcdef0123456789abcdef","error_message":"  "}',
    "complete-success-string.json": '{"operation_id":"0123456789abcdef0123456789abcdef","success":"yes"}',
    "not-json.txt": "script_name=x",
    "deep.json": '{"script_name":"x","extra":' + deep(5000) + "}",
}
for name, data in T.items():
    put("tracking", name, data)

# ---- body: [encoding | 0x80 to compress here, cap index, payload...]
ID, IDENT, GZ, XGZ, ZS, GZSP, BR, LIST = range(8)
CAP0, CAP1, CAP7, CAP64, CAP512, CAP4K, CAP64K, CAP1M = range(8)
doc = json.dumps([{"message": f"event {i}", "context": {"i": i}} for i in range(20)]).encode()


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout


def body(name, mode, cap, payload):
    put("body", name, bytes([mode, cap]) + payload)


body("identity.bin", ID, CAP4K, doc)
body("identity-over-cap.bin", IDENT, CAP512, doc)
body("gzip.bin", GZ, CAP4K, gzip.compress(doc, 6, mtime=0))
body("x-gzip-spaced.bin", GZSP, CAP4K, gzip.compress(doc, 1, mtime=0))
body("gzip-two-members.bin", XGZ, CAP4K, gzip.compress(doc[:100], mtime=0) + gzip.compress(doc[100:], mtime=0))
lying = bytearray(gzip.compress(doc, mtime=0))
lying[-4:] = (10).to_bytes(4, "little")
body("gzip-lying-trailer.bin", GZ, CAP4K, bytes(lying))
body("gzip-truncated.bin", GZ, CAP4K, gzip.compress(doc, mtime=0)[:-9])
body("gzip-trailing-garbage.bin", GZ, CAP4K, gzip.compress(doc, mtime=0) + b"junk")
body("gzip-bomb.bin", GZ, CAP64K, gzip.compress(b"\0" * (1 << 20), 9, mtime=0))
body("gzip-empty.bin", GZ, CAP64, b"")
body("not-gzip.bin", GZ, CAP4K, b"not gzip at all")
body("zstd.bin", ZS, CAP4K, zstd(doc))
body("zstd-bomb.bin", ZS, CAP64K, zstd(b"\0" * (1 << 20)))
body("zstd-two-frames.bin", ZS, CAP4K, zstd(doc[:50]) + zstd(doc[50:]))
body("zstd-garbage.bin", ZS, CAP4K, b"\x28\xb5\x2f\xfd garbage")
body("brotli-refused.bin", BR, CAP4K, doc)
body("list-refused.bin", LIST, CAP4K, doc)
body("here-gzip.bin", 0x80 | GZ, CAP4K, doc)
body("here-zstd.bin", 0x80 | ZS, CAP4K, doc)
body("here-gzip-over-cap.bin", 0x80 | GZ, CAP64, doc)
body("here-zstd-cap0.bin", 0x80 | ZS, CAP0, b"x")
body("here-identity-cap1.bin", 0x80 | ID, CAP1, b"x")


# ---- wire: stream entries (postcard; storage/src/wire.rs)
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return varint(len(b)) + b


def opt(text):
    return b"\0" if text is None else b"\1" + s(text)


def header(tenant, ts, ua, ip, events):
    return bytes([tenant] * 16) + zigzag(ts) + opt(ua) + opt(ip) + varint(events)


def event(msg, level=4, ctx=None, fp="fp", stack=None, source="api", env=None, url=None):
    return bytes([7] * 16) + bytes([level]) + s(fp) + s(msg) + opt(stack) + opt(ctx) + s(source) + opt(env) + opt(url)


V = b"\x01"
put("wire", "one-event.bin", V + header(1, 1_764_000_000_000, "ua/1", "10.0.0.1", 1) + event("boom", ctx='{"a":1}'))
put("wire", "two-chunks.bin", V + header(1, 5, None, None, 2) + event("a") + event("b", level=5, stack="at x", env="prod", url="/u")
    + header(2, -7, "ua", None, 1) + event("other tenant"))
put("wire", "empty-envelope.bin", V)
put("wire", "zero-events.bin", V + header(3, 0, None, None, 0))
put("wire", "nul-in-message.bin", V + header(1, 1, None, None, 1) + event("nul \0 here"))
put("wire", "count-too-high.bin", V + header(1, 1, None, None, 0xFFFFFFFF) + event("a"))
put("wire", "bad-version.bin", b"\x02" + header(1, 1, None, None, 1) + event("a"))
put("wire", "bad-level.bin", V + header(1, 1, None, None, 1) + event("a", level=9))
put("wire", "bad-utf8.bin", V + header(1, 1, None, None, 1) + event(b"\xff\xfe"))
put("wire", "truncated.bin", (V + header(1, 1, None, None, 1) + event("truncated"))[:-3])
put("wire", "overlong-varint.bin", V + bytes([1] * 16) + b"\x82\x80\x00" + b"\0\0" + b"\x81\x00" + event("a"))
put("wire", "old-json.bin", '{"message":"old json"}')
