#!/usr/bin/env python3
"""Regenerates corpus/token/, the seeds of the `token` fuzz target. The seeds
are committed; `token::props::token_fuzz_corpus_replays_without_panicking`
replays them (signing the payload-* ones with a test CA first)."""
import base64, os

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "token"))

def b(x):
    return base64.urlsafe_b64encode(x if isinstance(x, bytes) else x.encode()).rstrip(b"=").decode()

H = b('{"alg":"ES256","typ":"JWT"}')
sig = b(os.urandom(64))
good = '{"sub":"spiffe://mesh.local/orders","iat":1700000000,"exp":4102444800,"jti":"0123456789abcdef0123456789abcdef"}'
P = b(good)
raw = {
    "empty.txt": "",
    "dots.txt": "..",
    "four-parts.txt": H + "." + P + "." + sig + ".x",
    "alg-none.txt": b('{"alg":"none","typ":"JWT"}') + "." + P + ".",
    "alg-hs256.txt": b('{"alg":"HS256"}') + "." + P + "." + sig,
    "header-not-json.txt": b("not json") + "." + P + "." + sig,
    "header-deep-json.txt": b("[" * 5000 + "]" * 5000) + "." + P + "." + sig,
    "padded-base64.txt": H + "==." + P + "." + sig,
    "std-base64-chars.txt": H + "." + P + "+/." + sig,
    "wrong-signature.txt": H + "." + P + "." + sig,
    "short-signature.txt": H + "." + P + "." + b(os.urandom(10)),
    "too-long.txt": H + "." + "A" * 5000 + "." + sig,
    "non-ascii.txt": H + ".\u00e9" + P + "." + sig,
    "whitespace-inside.txt": H + ". " + P + "." + sig,
    "nul-bytes.txt": H + "\x00." + P + "." + sig,
    "bearer-prefix.txt": "Bearer " + H + "." + P + "." + sig,
}
sub = '"sub":"spiffe://mesh.local/orders"'
payloads = {
    "payload-valid.json": good,
    "payload-expired.json": '{%s,"iat":1,"exp":2,"jti":"ab"}' % sub,
    "payload-huge-numbers.json": '{%s,"iat":99999999999999999999,"exp":-99999999999999999999,"jti":"ab"}' % sub,
    "payload-i64-edges.json": '{%s,"iat":-9223372036854775808,"exp":9223372036854775807,"jti":"ab"}' % sub,
    "payload-missing-jti.json": '{%s,"iat":1,"exp":4102444800}' % sub,
    "payload-extra-field.json": '{%s,"iat":1,"exp":4102444800,"jti":"ab","admin":true}' % sub,
    "payload-jti-newline.json": '{%s,"iat":1,"exp":4102444800,"jti":"ab\\ncd 1"}' % sub,
    "payload-jti-long.json": '{%s,"iat":1,"exp":4102444800,"jti":"%s"}' % (sub, "a" * 100),
    "payload-sub-not-spiffe.json": '{"sub":"https://mesh.local/orders","iat":1,"exp":4102444800,"jti":"ab"}',
    "payload-sub-foreign-td.json": '{"sub":"spiffe://evil.example/orders","iat":1,"exp":4102444800,"jti":"ab"}',
    "payload-sub-dotdot.json": '{"sub":"spiffe://mesh.local/a/../mesh-ca","iat":1,"exp":4102444800,"jti":"ab"}',
    "payload-duplicate-sub.json": '{%s,"sub":"spiffe://mesh.local/admin","iat":1,"exp":4102444800,"jti":"ab"}' % sub,
    "payload-not-object.json": "[1,2,3]",
}
for name, text in {**raw, **payloads}.items():
    with open(name, "w") as f:
        f.write(text)
with open("payload-binary.json", "wb") as f:
    f.write(b"\xff\xfe\x00")
