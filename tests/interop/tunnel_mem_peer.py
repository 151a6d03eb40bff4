#!/usr/bin/env python3
"""Both ends of one connection through `tlsock tunnel`, for its memory test (standard library
only; Linux: /proc).

    tunnel_mem_peer.py MODE CAFILE CERTFILE KEYFILE

MODE is `termination` (a TLS client sends, the plaintext target never reads) or `origination`
(the TLS target sends, the plaintext client never reads). The script listens for the tunnel's
connection to the target, prints "target 127.0.0.1:PORT", and reads a line "PORT PID" on stdin:
the tunnel's port and process. The client verifies the tunnel as localhost against CAFILE; a TLS
target uses CERTFILE and KEYFILE. The TLS end (the sender) then

1. fills the path to the receiver: it sends FILL_PIECE bytes at a time, each once the previous one
   settled, until a piece no longer all reaches the kernel (the tunnel's socket to the receiver
   and the receiver's own, from /proc/net/tcp): that side is stalled, and the tunnel queues what
   it reads, far less than its 256 KiB limit;
2. sends TINY records of 1 byte each, PACE apart so that the tunnel reads them one by one.

If the records all reached the kernel (the stall was only the tunnel running late on a busy
machine), both steps are done again, ATTEMPTS times at most.

It prints one line, "fill=N tiny=N kernel=N data_kib=N data_after_kib=N rss_kib=N
rss_after_kib=N attempts=N": the bytes sent to fill, the records sent (fewer if the sender was
blocked for BLOCKED_S), the growth of what reached the kernel towards the receiver during step 2
(about 0: the stall held), the tunnel's VmData and VmRSS before and after step 2 (of the last
attempt), and the attempts. Every wait is bounded; it exits 0 once it printed the line.
"""
import os
import struct
import socket
import ssl
import sys
import time

FILL_PIECE = 1 << 16
FILL_LIMIT = 20.0  # seconds for the fill
SETTLE_S = 0.05  # what reaches the kernel has not changed for this long: the tunnel moved it
CONFIRM_S = 0.5  # the same, before a piece that did not all reach the kernel counts as a stall
TINY = 3000
PACE = 0.001
TINY_LIMIT = 30.0
BLOCKED_S = 5.0
ATTEMPTS = 3  # fills and records, when the records went through (see main())


def proc_status(pid, field):
    """A figure of /proc/PID/status in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def queues_towards(port):
    """The kernel's queues on the way to the receiver's end, local port PORT (IPv4 loopback): what
    the tunnel's socket to it has not had acknowledged (tx_queue), and what the receiver has not
    read (rx_queue)."""
    tunnel_tx = receiver_rx = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            tx, rx = (int(x, 16) for x in queues.split(":"))
            if int(remote.split(":")[1], 16) == port:
                tunnel_tx += tx  # the tunnel's socket to it
            elif int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) != 0:
                receiver_rx += rx  # the receiver's end (not a listener)
    return tunnel_tx, receiver_rx


def towards_port(port):
    """Bytes in the kernel on the way to the receiver's end (queues_towards(), both queues)."""
    return sum(queues_towards(port))


def settled(port, quiet):
    """What reached the kernel towards the receiver once it did not change for QUIET seconds
    (bounded)."""
    last = towards_port(port)
    since = time.monotonic()
    start = since
    while time.monotonic() - since < quiet and time.monotonic() - start < 2.0 + quiet:
        time.sleep(0.005)
        now = towards_port(port)
        if now != last:
            last, since = now, time.monotonic()
    return last


def fill(sender, towards):
    """Sends FILL_PIECE pieces until one no longer all reaches the kernel towards the receiver;
    returns the bytes sent."""
    piece = os.urandom(FILL_PIECE)
    filled = 0
    before = settled(towards, SETTLE_S)
    start = time.monotonic()
    while True:
        if time.monotonic() - start > FILL_LIMIT:
            raise RuntimeError("the path to the receiver did not stall in %.0f s" % FILL_LIMIT)
        sender.sendall(piece)
        filled += len(piece)
        now = settled(towards, SETTLE_S)
        # A busy machine may only have delayed the tunnel: a stall is confirmed at length, and
        # only with bytes waiting in the tunnel's socket to the receiver (its window is closed;
        # while it is open they leave at once on loopback), not merely not written yet.
        if (
            now - before < len(piece)
            and settled(towards, CONFIRM_S) - before < len(piece)
            and queues_towards(towards)[0] > 0
        ):
            return filled  # some of it waits in the tunnel: stalled
        before = towards_port(towards)


def send_tiny(sender):
    """Sends up to TINY records of 1 byte, PACE apart; returns how many, and whether the sender
    was blocked (the tunnel no longer reads it)."""
    sender.settimeout(BLOCKED_S)
    sent = 0
    start = time.monotonic()
    try:
        while sent < TINY and time.monotonic() - start < TINY_LIMIT:
            sender.sendall(b"x")
            sent += 1
            time.sleep(PACE)
    except socket.timeout:
        return sent, True
    finally:
        sender.settimeout(10)
    return sent, False


def main():
    mode = sys.argv[1]
    cafile, cert, key = sys.argv[2:5]
    lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if mode == "termination":
        # A small receive buffer for the target's end (inherited): the path stalls sooner.
        lis.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    lis.bind(("127.0.0.1", 0))
    lis.listen(1)
    lis.settimeout(10)
    print("target 127.0.0.1:%d" % lis.getsockname()[1], flush=True)
    tunnel_port, pid = (int(x) for x in sys.stdin.readline().split())

    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(10)
    if mode == "origination":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    client.connect(("127.0.0.1", tunnel_port))
    if mode == "termination":
        ctx = ssl.create_default_context(cafile=cafile)
        client = ctx.wrap_socket(client, server_hostname="localhost")
    target, _ = lis.accept()
    target.settimeout(10)
    if mode == "origination":
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        target = sctx.wrap_socket(target, server_side=True)
    # The TLS end sends; the plaintext end, the receiver, reads nothing.
    sender, receiver = (client, target) if mode == "termination" else (target, client)
    towards = receiver.getsockname()[1]

    # A stall seen on a busy machine may only have been the tunnel running late: then the records
    # go through (the kernel takes them), and the path is filled further and the records tried
    # again, a few times at most.
    filled = 0
    for attempt in range(1, ATTEMPTS + 1):
        filled += fill(sender, towards)
        data0, rss0 = proc_status(pid, "VmData"), proc_status(pid, "VmRSS")
        kernel0 = towards_port(towards)
        sent, blocked = send_tiny(sender)
        time.sleep(0.5)  # the tunnel reads what it is going to read
        kernel = towards_port(towards) - kernel0
        data1, rss1 = proc_status(pid, "VmData"), proc_status(pid, "VmRSS")
        if kernel < sent or blocked:
            break
    print(
        "fill=%d tiny=%d kernel=%d data_kib=%d data_after_kib=%d rss_kib=%d rss_after_kib=%d "
        "attempts=%d" % (filled, sent, kernel, data0, data1, rss0, rss1, attempt),
        flush=True,
    )
    # A reset each: the tunnel drops what it queued at once.
    for sock in (client, target):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    lis.close()


if __name__ == "__main__":
    main()
