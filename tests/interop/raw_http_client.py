#!/usr/bin/env python3
"""Sends one raw request over TLS and tells how the server answered (standard library only).

    raw_http_client.py PORT CAFILE REQUEST [WAIT]

REQUEST is sent exactly as given after Python backslash escapes are decoded ("\\n", "\\r",
"\\x00"), with "{N*X}" standing for N copies of the character X (for oversized requests). The
client then only reads, never closing its side, for up to WAIT seconds (default 10): a server
that waits for more of the request shows as "open". Prints the first line of the response
("-" for none), then how the connection ended: "close_notify", "eof" (no close_notify) or
"open", then the milliseconds that took, then how many responses came ("HTTP/1.1 " status
lines). Exits 0 when the connection ended, 1 when it is still open.
"""
import re
import socket
import ssl
import sys
import time


def decode(text):
    text = re.sub(r"\{(\d+)\*(.)\}", lambda m: m.group(2) * int(m.group(1)), text)
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def main():
    port, cafile, request = int(sys.argv[1]), sys.argv[2], decode(sys.argv[3])
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    start = time.monotonic()
    sock.sendall(request)
    response = b""
    ending = "open"
    while ending == "open":
        left = wait - (time.monotonic() - start)
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ssl.SSLEOFError:
            ending = "eof"
            break
        except (ConnectionResetError, BrokenPipeError):
            ending = "eof"
            break
        if not data:
            ending = "close_notify"
        response += data
    elapsed = int((time.monotonic() - start) * 1000)
    status_line = response.split(b"\r\n", 1)[0].decode("latin-1") if response else "-"
    print(status_line)
    print(ending)
    print(elapsed)
    print(response.count(b"HTTP/1.1 "))
    sock.close()
    return 0 if ending != "open" else 1


if __name__ == "__main__":
    sys.exit(main())
