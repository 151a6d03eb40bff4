#!/usr/bin/env python3
"""Both ends of connections through `tlsock tunnel`, for its close tests (standard library only).

    tunnel_reset_peer.py CLIENT TARGET CAFILE CERTFILE KEYFILE

CLIENT and TARGET say what the client and the target speak, `tls` or `plain`. The script listens
for the tunnel's connections to the target, prints "target 127.0.0.1:PORT", and reads the
tunnel's port from a line on stdin. The client verifies the tunnel as localhost against CAFILE;
a TLS target uses CERTFILE and KEYFILE. Then it runs these cases, each on a new connection, and
prints one line per case, "case=NAME field=value ...":

reset-client, reset-target: both ends write as fast as the tunnel takes their data and never
    read, until neither could write for FILL_IDLE seconds: both directions are in backpressure,
    the tunnel has stopped reading both sides and has data queued for each, which nobody reads.
    Then one end resets (SO_LINGER 0 and close, no close_notify), and the other (the survivor)
    goes on writing (paced), never reading, until it sees its connection end: the peer's FIN (POLLRDHUP),
    a hang-up or error (POLLHUP, POLLERR), or a failed write. Fields: survivor, end (fin, hangup,
    reset, error or none), ms (from the reset), written (before the reset).

truncate-read (only when exactly one end speaks TLS): the TLS end sends TRUNCATE_BYTES and
    closes its TCP connection without close_notify; the script prints "sync truncated" and waits
    for a line "go" on stdin (the test sends it once the tunnel logged the truncation); then the
    other end reads everything until the end. Fields: survivor, got (bytes, checked against what
    was sent: -1 if they differ), end (fin or reset).

truncate-stuck (likewise): the TLS end sends TRUNCATE_BYTES and closes without close_notify;
    after the same "sync truncated", the other end never reads and writes (paced) until its
    connection ends. Fields: survivor, end, ms (from the "go"), written (after it).

Every wait is bounded (LIMIT seconds for an end); it exits 0 once every case ran, 1 otherwise.
"""
import hashlib
import os
import select
import socket
import ssl
import struct
import sys
import time

FILL_IDLE = 0.5
FILL_LIMIT = 20.0
LIMIT = 20.0  # the tunnel's idle timeout is 300 s: anything close to that is a failure
TRUNCATE_BYTES = 200 * 1024  # less than the tunnel queues before it stops reading a side
CHUNK = os.urandom(1 << 16)
PACE = 0.005  # between the survivor's writes: enough to show it is not blocked, little CPU
WANT_IO = (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError)


def small_buffers(sock):
    # Small kernel buffers fill fast; the tunnel's own sockets keep the system's.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)


def try_write(sock):
    """One non-blocking write: bytes written, 0 if it would block; raises on errors."""
    try:
        return sock.send(CHUNK)
    except WANT_IO:
        return 0


def fill(ends):
    """Writes on every end until none could write for FILL_IDLE seconds; returns the bytes."""
    poller = select.poll()
    for sock in ends:
        poller.register(sock, select.POLLOUT)
    start = last = time.monotonic()
    total = 0
    while time.monotonic() - last < FILL_IDLE:
        if time.monotonic() - start > FILL_LIMIT:
            raise RuntimeError("still writing after %.0f s" % FILL_LIMIT)
        for fd, _ in poller.poll(100):
            n = try_write(next(s for s in ends if s.fileno() == fd))
            if n > 0:
                total += n
                last = time.monotonic()
    return total


def write_until_end(sock):
    """Writes (paced), never reading, until the connection ends: (end, ms, bytes written)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT | select.POLLRDHUP)
    start = time.monotonic()
    end = "none"
    written = 0
    while end == "none" and time.monotonic() - start < LIMIT:
        for _, ev in poller.poll(50):
            if ev & (select.POLLERR | select.POLLHUP):
                end = "hangup"
            elif ev & select.POLLRDHUP:
                end = "fin"
            elif ev & select.POLLOUT:
                try:
                    written += try_write(sock)
                except (ConnectionResetError, BrokenPipeError):
                    end = "reset"
                except (OSError, ssl.SSLError):
                    end = "error"
                time.sleep(PACE)
    return end, int((time.monotonic() - start) * 1000), written


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_without_notify(sock):
    """Closes with a FIN and no close_notify. What arrived unread (a TLS 1.3 server's session
    tickets) is read first: closing a socket with unread input would reset the connection."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except WANT_IO:
        pass
    sock.close()  # Python sends close_notify only from unwrap()


class Peers:
    def __init__(self, client_tls, target_tls, cafile, cert, key):
        self.client_tls, self.target_tls = client_tls, target_tls
        self.client_ctx = ssl.create_default_context(cafile=cafile)
        self.target_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.target_ctx.load_cert_chain(cert, key)
        self.lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        small_buffers(self.lis)  # accepted sockets inherit them
        self.lis.bind(("127.0.0.1", 0))
        self.lis.listen(4)
        self.lis.settimeout(10)
        self.port = None

    def connect(self):
        """A client through the tunnel and the target's end of it: {"client": s, "target": s}."""
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        small_buffers(client)
        client.settimeout(10)
        client.connect(("127.0.0.1", self.port))
        if self.client_tls:
            client = self.client_ctx.wrap_socket(client, server_hostname="localhost")
        target, _ = self.lis.accept()
        target.settimeout(10)
        if self.target_tls:
            target = self.target_ctx.wrap_socket(target, server_side=True)
        return {"client": client, "target": target}


def other(name):
    return "target" if name == "client" else "client"


def case_reset(peers, resetter):
    ends = peers.connect()
    for sock in ends.values():
        sock.setblocking(False)
    written = fill(list(ends.values()))
    reset(ends[resetter])
    survivor = other(resetter)
    end, ms, _ = write_until_end(ends[survivor])
    ends[survivor].close()
    return "case=reset-%s survivor=%s end=%s ms=%d written=%d" % (
        resetter, survivor, end, ms, written)


def send_and_truncate(ends, truncater):
    data = os.urandom(TRUNCATE_BYTES)
    ends[truncater].sendall(data)
    close_without_notify(ends[truncater])
    return hashlib.sha256(data).digest()


def sync(what):
    """Tells the test what happened and waits until it says the tunnel has seen it."""
    print("sync %s" % what, flush=True)
    if sys.stdin.readline().strip() != "go":
        raise RuntimeError("the test did not answer 'go' after %s" % what)


def case_truncate_read(peers, truncater):
    ends = peers.connect()
    survivor = ends[other(truncater)]
    digest = send_and_truncate(ends, truncater)
    sync("truncated")  # the tunnel has the end of the stream, data may wait for the survivor
    got = b""
    end = "none"
    survivor.settimeout(LIMIT)
    try:
        while True:
            data = survivor.recv(65536)
            if not data:
                end = "fin"
                break
            got += data
    except (ConnectionResetError, BrokenPipeError):
        end = "reset"
    survivor.close()
    size = len(got) if hashlib.sha256(got).digest() == digest else -1
    return "case=truncate-read survivor=%s got=%d end=%s" % (other(truncater), size, end)


def case_truncate_stuck(peers, truncater):
    ends = peers.connect()
    survivor = ends[other(truncater)]
    send_and_truncate(ends, truncater)
    # Writing to a tunnel that has not read everything yet would reach the closed end, whose
    # kernel answers with a reset, and the tunnel would see a reset, not a truncation.
    sync("truncated")
    survivor.setblocking(False)
    end, ms, written = write_until_end(survivor)
    survivor.close()
    return "case=truncate-stuck survivor=%s end=%s ms=%d written=%d" % (
        other(truncater), end, ms, written)


def main():
    client_tls, target_tls = sys.argv[1] == "tls", sys.argv[2] == "tls"
    peers = Peers(client_tls, target_tls, *sys.argv[3:6])
    print("target 127.0.0.1:%d" % peers.lis.getsockname()[1], flush=True)
    line = sys.stdin.readline()
    if not line.strip().isdigit():
        print("no tunnel port on stdin: %r" % line, flush=True)
        return 1
    peers.port = int(line)
    print(case_reset(peers, "client"), flush=True)
    print(case_reset(peers, "target"), flush=True)
    if client_tls != target_tls:
        tls_end = "client" if client_tls else "target"
        print(case_truncate_read(peers, tls_end), flush=True)
        print(case_truncate_stuck(peers, tls_end), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
