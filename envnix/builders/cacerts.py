"""What update-ca-certificates leaves in /etc/ssl/certs, without openssl: ``NAME.pem`` links to
each shipped certificate and OpenSSL's ``HASH.N`` links (the subject-name hash ``openssl
rehash`` computes) to them, so programs that use the directory (CApath) trust what programs
that use the bundle file trust.

Not a builder itself: mkmeta.py imports it (standard library only).

The hash is OpenSSL's X509_NAME_hash_ex: SHA-1 over the subject's canonical encoding (each
RDN's SET with string values turned into UTF8String, trimmed, inner whitespace collapsed and
ASCII lowercased; no outer SEQUENCE), first four bytes little-endian, in hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

# universal tags of the string types OpenSSL canonicalises (ASN1_MASK_CANON), and how to decode
_CANON = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1", 0x1A: "latin-1",
          0x1E: "utf-16-be", 0x1C: "utf-32-be"}
_SPACE = b" \t\n\v\f\r"


class CertError(ValueError):
    pass


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at pos."""
    if pos + 2 > len(data):
        raise CertError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise CertError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise CertError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, value start, value end, element start) of each element in data[start:end]."""
    out = []
    while start < end:
        tag, vs, ve = _tlv(data, start)
        out.append((tag, vs, ve, start))
        start = ve
    return out


def _der(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def _canon_string(raw: bytes) -> bytes:
    raw = raw.strip(_SPACE)
    out = bytearray()
    space = False
    for b in raw:
        if b < 0x80 and b in _SPACE:
            space = True
            continue
        if space:
            out.append(0x20)
            space = False
        out.append(b + 32 if 0x41 <= b <= 0x5A else b)
    return bytes(out)


def subject(der: bytes) -> bytes:
    """The subject Name's DER element of a certificate."""
    _, cs, _ = _tlv(der, 0)
    tbs_tag, ts, te = _tlv(der, cs)
    fields = _children(der, ts, te)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 5 or tbs_tag != 0x30:
        raise CertError("not an X.509 certificate")
    tag, _, ve, start = fields[4]  # serial, signature, issuer, validity, subject
    if tag != 0x30:
        raise CertError("subject is not a SEQUENCE")
    return der[start:ve]


def subject_hash(der: bytes) -> str:
    name = subject(der)
    _, ns, ne = _tlv(name, 0)
    canon = bytearray()
    for tag, ss, se, _ in _children(name, ns, ne):
        if tag != 0x31:
            raise CertError("RDN is not a SET")
        atvs = []
        for atag, as_, ae, _ in _children(name, ss, se):
            if atag != 0x30:
                raise CertError("attribute is not a SEQUENCE")
            parts = _children(name, as_, ae)
            if len(parts) != 2:
                raise CertError("attribute is not (type, value)")
            (_, _, _, oid_start), (vtag, vvs, vve, vstart) = parts
            oid = name[oid_start:parts[0][2]]
            if vtag in _CANON:
                text = name[vvs:vve].decode(_CANON[vtag]).encode("utf-8")
                value = _der(0x0C, _canon_string(text))
            else:
                value = name[vstart:vve]
            atvs.append(_der(0x30, oid + value))
        canon += _der(0x31, b"".join(sorted(atvs)))  # SET OF: DER sorts its elements
    digest = hashlib.sha1(bytes(canon)).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def pem_certificates(text: bytes) -> list[bytes]:
    out = []
    for block in text.split(b"-----BEGIN CERTIFICATE-----")[1:]:
        body = block.split(b"-----END CERTIFICATE-----", 1)[0]
        try:
            out.append(base64.b64decode(b"".join(body.split()), validate=True))
        except binascii.Error as exc:
            raise CertError(f"bad base64: {exc}") from None
    return out


def links(certs: dict[str, bytes]) -> tuple[list[tuple[str, str]], list[str]]:
    """For {"mozilla/NAME.crt": PEM bytes}: (symlinks (rel, target) under etc/ssl/certs,
    notes). NAME.pem -> /usr/share/ca-certificates/mozilla/NAME.crt, and HASH.N -> NAME.pem
    in file-name order, N counting distinct certificates with the same hash (openssl rehash)."""
    out: list[tuple[str, str]] = []
    notes: list[str] = []
    by_hash: dict[str, list[bytes]] = {}
    pems = []
    for rel, pem in sorted(certs.items()):
        name = rel.rsplit("/", 1)[-1].removesuffix(".crt") + ".pem"
        out.append((f"etc/ssl/certs/{name}", f"/usr/share/ca-certificates/{rel}"))
        pems.append((name, pem))
    for name, pem in sorted(pems):
        try:
            found = pem_certificates(pem)
            if len(found) != 1:
                raise CertError("not exactly one certificate")
            h = subject_hash(found[0])
        except (CertError, UnicodeError) as exc:
            notes.append(f"ca-certificates: {name} skipped: {exc}")
            continue
        seen = by_hash.setdefault(h, [])
        fingerprint = hashlib.sha1(found[0]).digest()
        if fingerprint in seen:
            continue
        out.append((f"etc/ssl/certs/{h}.{len(seen)}", name))
        seen.append(fingerprint)
    return out, notes
