"""Checks a Web Push request as a browser and a push service would, with implementations
independent of Parley's: the body decrypted by PyPI `http-ece` (RFC 8188 aes128gcm, the
RFC 8291 key derivation) with the subscription's private key and auth secret, and the VAPID
JWT (RFC 8292) verified with `cryptography` against the key in its `k=`.

stdin: {"body", "private_key" (raw 32 bytes), "auth"} base64url, "vapid" (the Authorization
header). stdout: {"plaintext", "aud", "exp", "sub"}. Exits non-zero when anything fails."""

import base64
import json
import sys

import http_ece
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main() -> None:
    req = json.load(sys.stdin)
    receiver = ec.derive_private_key(
        int.from_bytes(unb64(req["private_key"]), "big"), ec.SECP256R1()
    )
    plaintext = http_ece.decrypt(
        unb64(req["body"]),
        private_key=receiver,
        auth_secret=unb64(req["auth"]),
        version="aes128gcm",
    )
    scheme, _, params = req["vapid"].partition(" ")
    assert scheme == "vapid", scheme
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    header, claims, signature = fields["t"].split(".")
    assert json.loads(unb64(header)) == {"typ": "JWT", "alg": "ES256"}
    sig = unb64(signature)
    assert len(sig) == 64, "ES256 signatures are r || s, 64 bytes"
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(fields["k"]))
    public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    c = json.loads(unb64(claims))
    json.dump({"plaintext": plaintext.decode(), "aud": c["aud"], "exp": c["exp"], "sub": c["sub"]}, sys.stdout)


if __name__ == "__main__":
    main()
