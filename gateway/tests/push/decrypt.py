"""An independent check of Parley's Web Push cryptography (gateway/src/push/webpush.rs), run by
its tests with target/test-venv's Python (PyPI `http-ece` and `cryptography`).

Reads one JSON object from stdin:

  {"body": b64url, "private_key": b64url, "auth": b64url}
      Decrypts the `aes128gcm` body (RFC 8291 + RFC 8188) with http_ece, as the user agent
      whose raw 32-byte P-256 private key and auth secret these are; writes the plaintext to
      stdout.

  {"verify_vapid": "vapid t=<JWT>, k=<key>", "endpoint": url}
      Checks the VAPID header (RFC 8292) with cryptography: the JWT header, its ES256 signature
      against the k= key, and that aud is the endpoint's origin; prints the claims as JSON.

Exits 1 with a message on stderr when anything does not check out.
"""

import base64
import json
import sys
from urllib.parse import urlsplit

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def fail(message):
    print(f"decrypt.py: {message}", file=sys.stderr)
    sys.exit(1)


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decrypt(request):
    raw = b64url(request["private_key"])
    if len(raw) != 32:
        fail(f"private_key is {len(raw)} bytes, not 32")
    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    plaintext = http_ece.decrypt(
        b64url(request["body"]),
        private_key=key,
        auth_secret=b64url(request["auth"]),
        version="aes128gcm",
    )
    sys.stdout.buffer.write(plaintext)


def origin(url):
    """RFC 6454's serialization: scheme://host[:port], the default port left out."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or not parts.hostname:
        fail(f"not an http(s) URL: {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def verify_vapid(request):
    header = request["verify_vapid"]
    if not header.startswith("vapid "):
        fail(f"not a vapid Authorization header: {header!r}")
    params = {}
    for part in header[len("vapid "):].split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    if set(params) != {"t", "k"}:
        fail(f"expected t= and k=, got {sorted(params)}")
    head_b64, claims_b64, signature_b64 = params["t"].split(".")
    head = json.loads(b64url(head_b64))
    if head != {"typ": "JWT", "alg": "ES256"}:
        fail(f"JWT header {head}")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url(params["k"]))
    signature = b64url(signature_b64)
    if len(signature) != 64:
        fail(f"an ES256 signature is r || s, 64 bytes, not {len(signature)}")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        fail("the JWT's signature does not verify with the k= key")
    claims = json.loads(b64url(claims_b64))
    expected = origin(request["endpoint"])
    if claims.get("aud") != expected:
        fail(f"aud is {claims.get('aud')!r}, the endpoint's origin is {expected!r}")
    print(json.dumps(claims, sort_keys=True))


def main():
    try:
        request = json.load(sys.stdin)
        if "verify_vapid" in request:
            verify_vapid(request)
        else:
            decrypt(request)
    except SystemExit:
        raise
    except Exception as e:  # a refusal by http_ece or cryptography, or a malformed request
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
