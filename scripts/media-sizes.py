#!/usr/bin/env python3
"""Bytes in vs bytes stored for photo uploads, and time per image, on one fresh embedded gateway.

    scripts/media-sizes.py [GATEWAY_BINARY] [PHOTO ...]

Defaults: target/release/gateway and the real photos in gateway/tests/media/ (pass your own
to measure bigger ones). Prints one row per photo: bytes uploaded, bytes of the display
rendition and the thumbnail, their sum over the upload, and the server's processing time
(decode, resize, encode: the delta of parley_media_image_processing_seconds_sum in /metrics).
Standard library only.
"""
import base64, glob, hashlib, hmac, json, os, re, subprocess, sys, tempfile, time
import urllib.request

SECRET = b"measure-secret-0123456789abcdef0123"


def token(user):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "iat": now, "exp": now + 3600}).encode())
    sig = b64(hmac.new(SECRET, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def call(base, method, path, user=None, data=None, ctype="application/json"):
    req = urllib.request.Request(base + path, data=data, method=method)
    if user:
        req.add_header("authorization", "Bearer " + token(user))
    if data is not None:
        req.add_header("content-type", ctype)
    with urllib.request.urlopen(req) as r:
        return r.status, r.read()


def processing_sum(base):
    _, text = call(base, "GET", "/metrics")
    m = re.search(rb"^parley_media_image_processing_seconds_sum (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/gateway"
    photos = sys.argv[2:] or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "gateway", "tests", "media", "*.*g")))
    data = tempfile.mkdtemp()
    gw = subprocess.Popen(
        [binary, "--port", "0", "--bind", "127.0.0.1", "--data-dir", data, "--jwt-secret", SECRET.decode(), "--log", "warn"],
        stdout=subprocess.PIPE, text=True)
    try:
        addr = None
        for line in gw.stdout:
            if line.startswith("parley gateway listening on "):
                addr = line.split()[-1]
                break
        base = "http://" + addr
        _, conv = call(base, "POST", "/api/conversations", "buyer", json.dumps({"sellerId": "seller", "listingId": "sizes"}).encode())
        conv = json.loads(conv)["id"]
        print(f"{'photo':<14} {'pixels':>11} {'uploaded':>9} {'display':>9} {'thumb':>7} {'stored/up':>9} {'ms':>6}")
        total_in = total_out = 0
        for p in photos:
            raw = open(p, "rb").read()
            before = processing_sum(base)
            _, up = call(base, "POST", f"/api/media?conversation={conv}&name={os.path.basename(p)}", "buyer", raw, "application/octet-stream")
            took = (processing_sum(base) - before) * 1000
            up = json.loads(up)
            _, thumb = call(base, "GET", up["thumbUrl"])
            display = up["sizeBytes"]
            total_in += len(raw)
            total_out += display + len(thumb)
            px = f"{up['originalWidth']}x{up['originalHeight']}"
            print(f"{os.path.basename(p):<14} {px:>11} {len(raw):>9} {display:>9} {len(thumb):>7} {(display + len(thumb)) / len(raw):>9.2f} {took:>6.1f}")
        print(f"{'all':<14} {'':>11} {total_in:>9} {'':>9} {'':>7} {total_out / total_in:>9.2f}")
    finally:
        gw.terminate()
        gw.wait()


if __name__ == "__main__":
    main()
