#!/usr/bin/env python3
"""Clients of known behaviour for the statistics tests (standard library only).

    stats_client.py PORT good N SIZE FACTOR CAFILE
        N TLS connections (verified against CAFILE as localhost) open at once: each sends SIZE
        bytes, reads SIZE * FACTOR back, and only then do all of them end with close_notify.
    stats_client.py PORT garbage
        plaintext HTTP instead of a ClientHello; waits for the server to close.
    stats_client.py PORT silent
        connects and sends nothing until the server closes (its handshake timeout).
    stats_client.py PORT reset
        sends the start of a ClientHello record, then resets the connection (SO_LINGER 0).
    stats_client.py PORT drop CAFILE
        a TLS connection (verified as localhost): sends a line, reads its echo, then resets the
        connection (SO_LINGER 0) instead of ending it: an error of an open connection.

Every socket operation has a timeout; the exit status is 0 when the client did its part.
"""
import socket
import ssl
import struct
import sys

IO_TIMEOUT = 20.0


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)


def wait_closed(sock):
    with sock:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass


def good(port, count, size, factor, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    conns = [ctx.wrap_socket(connect(port), server_hostname="localhost") for _ in range(count)]
    for conn in conns:
        conn.sendall(b"s" * size)
    for conn in conns:
        got = 0
        while got < size * factor:
            data = conn.recv(65536)
            if not data:
                sys.exit("stats_client: %d bytes back, expected %d" % (got, size * factor))
            got += len(data)
    for conn in conns:
        try:
            conn.unwrap()
        except (OSError, ssl.SSLError):
            pass
        conn.close()


def main():
    port = int(sys.argv[1])
    mode = sys.argv[2]
    if mode == "good":
        good(port, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif mode == "garbage":
        sock = connect(port)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        wait_closed(sock)
    elif mode == "silent":
        wait_closed(connect(port))
    elif mode == "reset":
        sock = connect(port)
        # A handshake record header announcing 512 bytes, and the first few of them.
        sock.sendall(bytes([22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    elif mode == "drop":
        ctx = ssl.create_default_context(cafile=sys.argv[3])
        conn = ctx.wrap_socket(connect(port), server_hostname="localhost")
        conn.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            data = conn.recv(64)
            if not data:
                sys.exit("stats_client: no echo")
            got += data
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    else:
        sys.exit("stats_client: unknown mode " + mode)


if __name__ == "__main__":
    main()
