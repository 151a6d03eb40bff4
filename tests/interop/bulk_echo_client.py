#!/usr/bin/env python3
"""A TLS client that proves an echo server's backpressure (standard library only).

It writes TOTAL bytes as fast as the server takes them but reads nothing for the first two
seconds, then reads the whole echo and compares it with what it sent. TOTAL is 16 MiB more than
all the kernel's socket buffers on the way can hold (twice tcp_rmem and tcp_wmem at their
maximum per TCP connection, HOPS connections: 2 through a tunnel), so a server (and a tunnel)
that stops reading while its output waits makes the writer block: when the reading starts, not
everything can have been sent. One that kept reading (and buffering in memory) would have taken
all of it.

    bulk_echo_client.py PORT CAFILE [HOPS]

Prints one line of figures and exits 0, or prints why not and exits 1. Bounded to 40 seconds.
"""
import hashlib
import os
import select
import socket
import ssl
import sys
import time

PAUSE = 2.0
LIMIT = 40.0


def tcp_max(name):
    with open("/proc/sys/net/ipv4/" + name) as f:
        return int(f.read().split()[2])


def main():
    port, cafile = int(sys.argv[1]), sys.argv[2]
    hops = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    buffers = hops * 2 * (tcp_max("tcp_rmem") + tcp_max("tcp_wmem"))
    total = buffers + (16 << 20)
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    sock.setblocking(False)
    chunk = os.urandom(1 << 16)
    sent_digest = hashlib.sha256()
    got_digest = hashlib.sha256()
    sent = got = 0
    sent_when_reading = None
    start = time.monotonic()
    while got < total:
        now = time.monotonic()
        if now - start > LIMIT:
            print("bulk_echo_client: timed out: sent %d, got %d of %d" % (sent, got, total))
            return 1
        reading = now - start >= PAUSE
        if reading and sent_when_reading is None:
            sent_when_reading = sent
        writing = sent < total
        select.select([sock] if reading else [], [sock] if writing else [], [], 0.05)
        if writing:
            # A retried SSL write must offer the same bytes: the piece only depends on `sent`.
            piece = chunk[: min(len(chunk), total - sent)]
            try:
                n = sock.send(piece)
                sent_digest.update(piece[:n])
                sent += n
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        while reading and got < total:
            try:
                data = sock.recv(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                print("bulk_echo_client: the server closed after %d of %d bytes" % (got, total))
                return 1
            got_digest.update(data)
            got += len(data)
    sock.setblocking(True)
    sock.settimeout(10)
    sock.unwrap()
    sock.close()
    if got_digest.digest() != sent_digest.digest():
        print("bulk_echo_client: the echo differs from what was sent")
        return 1
    if sent_when_reading >= total:
        print("bulk_echo_client: all %d bytes were taken before anything was read: "
              "the server did not stop reading" % total)
        return 1
    print("bulk_echo_client: %d bytes echoed intact; %d sent before reading began "
          "(kernel buffers up to %d)" % (total, sent_when_reading, buffers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
