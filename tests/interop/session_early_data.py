#!/usr/bin/env python3
"""Copies an `openssl s_client -sess_out` session file, adding max_early_data to it.

A tlsock server's tickets allow no early data, so s_client, which only sends early data on a
session that allows it, would never try. With this copy it does: the server gets real 0-RTT data
under a ticket it can decrypt, and must still reject it (tickets.sh).

Usage: session_early_data.py IN.pem OUT.pem [MAX_EARLY_DATA]
"""
import base64
import sys

LABEL = "SSL SESSION PARAMETERS"
# SSL_SESSION's ASN.1 (OpenSSL ssl/ssl_asn1.c): max_early_data is [15] EXPLICIT UINT32, after
# the fields tagged [0]..[14] and before those tagged [16] and up.
MAX_EARLY_DATA_TAG = 15


def der_len(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def read_tlv(buf, at):
    """(tag byte, whole element, next offset) of the element at @at (low tag numbers only)."""
    tag = buf[at]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number form")
    n = buf[at + 1]
    head = 2
    if n & 0x80:
        count = n & 0x7F
        n = int.from_bytes(buf[at + 2 : at + 2 + count], "big")
        head += count
    end = at + head + n
    return tag, buf[at:end], end


def main():
    src, dst = sys.argv[1], sys.argv[2]
    value = int(sys.argv[3]) if len(sys.argv) > 3 else 16384
    text = open(src).read()
    begin, end = f"-----BEGIN {LABEL}-----", f"-----END {LABEL}-----"
    der = base64.b64decode(text.split(begin)[1].split(end)[0])
    tag, _, _ = read_tlv(der, 0)
    if tag != 0x30:
        sys.exit("not a DER SEQUENCE")
    # The outer SEQUENCE's contents.
    n = der[1]
    at = 2 + (n & 0x7F if n & 0x80 else 0)
    fields = []
    while at < len(der):
        tag, element, at = read_tlv(der, at)
        fields.append((tag, element))
    number = lambda t: t & 0x1F if t & 0xC0 == 0x80 else -1
    if any(number(t) == MAX_EARLY_DATA_TAG for t, _ in fields):
        sys.exit("the session already has max_early_data")
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")  # a positive INTEGER
    integer = b"\x02" + der_len(len(body)) + body
    field = bytes([0xA0 | MAX_EARLY_DATA_TAG]) + der_len(len(integer)) + integer
    later = [i for i, (t, _) in enumerate(fields) if number(t) > MAX_EARLY_DATA_TAG]
    place = later[0] if later else len(fields)
    fields.insert(place, (0, field))
    contents = b"".join(e for _, e in fields)
    out = b"\x30" + der_len(len(contents)) + contents
    b64 = base64.b64encode(out).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    with open(dst, "w") as f:
        f.write(begin + "\n" + "\n".join(lines) + "\n" + end + "\n")


if __name__ == "__main__":
    main()
