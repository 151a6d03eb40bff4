#!/usr/bin/env python3
"""Both ends of connections through `tlsock tunnel` (TLS client, plaintext target), for the tests
of how a stop or an idle timeout ends a connection whose streams have not ended (standard
library only).

    tunnel_close_peer.py MODE CAFILE

The script listens for the tunnel's connections to the target, prints "target 127.0.0.1:PORT",
and reads the tunnel's port from a line on stdin. The client verifies the tunnel as localhost
against CAFILE, and does not suppress ragged EOFs, so that it tells a close_notify from a TCP end
without one. Each connection starts with a line naming its case, which the target reads first.
Then, by MODE:

stop: three connections at once.
    download: the target sends CHUNK every PACE seconds, forever; the client reads.
    upload:   the client sends CHUNK every PACE seconds, forever; the target reads.
    complete: the target answers ANSWER, then ends its stream (FIN), only after "go"; the
              client reads the answer to its end, then ends its own stream (close_notify).
    Once data flows both ways and the complete target has its line, the script prints "sync
    ready" and waits for "go" on stdin (the test sends SIGTERM to the tunnel first); the complete
    target answers ANSWER_DELAY seconds later, well within the stop's one second of grace.
stall: one connection. The client sends STALL_BYTES (less than the tunnel queues before it
    stops reading a side, 256 KiB, so that it reads the client's end too; more than the kernel
    holds for the target, so that some stays queued in the tunnel) and close_notify, then waits.
    The target reads nothing for STALL_SECONDS (longer than the tunnel's --idle-timeout: the
    tunnel still has data queued for it, and the end of the stream, a shutdown, behind it),
    then reads to the end.

One line per case, "case=NAME client=END target=END got=N", where END is how that end's
connection ended: close_notify (TLS, clean), truncated (TLS, TCP end without close_notify), fin
(plaintext, clean), reset (ECONNRESET or EPIPE, or the TCP state after a reset), timeout, none
(still open at the bound), or error:NAME; got is what the reading end got (the client's, for
complete). Every wait is bounded (LIMIT seconds); the script exits 0 once every case printed its
line, 1 otherwise.
"""
import os
import select
import socket
import ssl
import sys
import threading
import time

LIMIT = 20.0
CHUNK = os.urandom(16 * 1024)
PACE = 0.02
FLOWING = 64 * 1024  # bytes moved before the stop
ANSWER = b"answer: the whole of it\n"
ANSWER_DELAY = 0.2
STALL_BYTES = 240 * 1024
STALL_SECONDS = 3.0
TCP_CLOSE = 7  # tcpi_state, include/net/tcp_states.h
WANT_IO = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)

results = {}
flowing = {}
go = threading.Event()
lock = threading.Lock()


def record(case, end, what):
    with lock:
        results.setdefault(case, {})[end] = what


def reset_seen(sock):
    """True if the connection was reset. Python's ssl reports a reset as it does an end without
    close_notify (SSLEOFError), so the TCP state tells them apart: CLOSE after a reset,
    CLOSE_WAIT after the peer's FIN (the socket is still open here)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE
    except OSError:
        return False


def end_of(exc, sock):
    """The END name of an exception that ended a connection."""
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or reset_seen(sock):
        return "reset"
    if isinstance(exc, ssl.SSLEOFError):
        return "truncated"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return "error:" + type(exc).__name__


def tls_client(port, case):
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    raw = socket.create_connection(("127.0.0.1", port), timeout=LIMIT)
    sock = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    sock.sendall(case.encode() + b"\n")
    return sock


def read_to_end(sock, case, who, clean):
    """Reads until the end (bounded); records END and the bytes; clean: the END of a b''."""
    total = 0
    end = "none"
    deadline = time.monotonic() + LIMIT
    sock.settimeout(0.5)
    while end == "none" and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        except (OSError, ssl.SSLError) as exc:
            end = end_of(exc, sock)
            break
        if not data:
            end = clean
        total += len(data)
        if total >= FLOWING:
            flowing[(case, who)] = True
    record(case, who, end)
    record(case, who + "_bytes", total)
    return total


def paced_write(sock, case, who, readable_end):
    """Writes CHUNK every PACE s until the connection ends (bounded), reading what comes:
    readable_end names the end a recv() of b'' means."""
    sock.setblocking(False)
    end = "none"
    written = 0
    deadline = time.monotonic() + LIMIT
    while end == "none" and time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], PACE)
        try:
            if readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                try:
                    if not sock.recv(65536):
                        end = readable_end
                        break
                except WANT_IO:
                    pass
            try:
                written += sock.send(CHUNK)
            except WANT_IO:
                pass
        except (OSError, ssl.SSLError) as exc:
            end = end_of(exc, sock)
        if written >= FLOWING:
            flowing[(case, who)] = True
    record(case, who, end)


def read_line(conn):
    """The case line a connection starts with (byte by byte: nothing after it is taken)."""
    line = b""
    while not line.endswith(b"\n") and len(line) < 64:
        b = conn.recv(1)
        if not b:
            break
        line += b
    return line.decode(errors="replace").strip()


def target_conn(conn):
    conn.settimeout(LIMIT)
    case = read_line(conn)
    if case == "download":
        paced_write(conn, case, "target", "fin")
    elif case == "upload":
        read_to_end(conn, case, "target", "fin")
    elif case == "complete":
        flowing[(case, "target")] = True
        if go.wait(LIMIT):
            time.sleep(ANSWER_DELAY)
            try:
                conn.sendall(ANSWER)
                conn.shutdown(socket.SHUT_WR)
            except OSError as exc:
                record(case, "target", end_of(exc, conn))
                return
        read_to_end(conn, case, "target", "fin")
    elif case == "stall":
        time.sleep(STALL_SECONDS)
        read_to_end(conn, case, "target", "fin")
    conn.close()


def accept_loop(server, count):
    threads = []
    server.settimeout(LIMIT)
    try:
        for _ in range(count):
            conn, _ = server.accept()
            t = threading.Thread(target=target_conn, args=(conn,), daemon=True)
            t.start()
            threads.append(t)
    except OSError as exc:
        print("tunnel_close_peer: accept: %s" % exc, file=sys.stderr, flush=True)
    for t in threads:
        t.join(LIMIT + 5)


def client_download(port):
    read_to_end(tls_client(port, "download"), "download", "client", "close_notify")


def client_upload(port):
    paced_write(tls_client(port, "upload"), "upload", "client", "close_notify")


def client_complete(port):
    sock = tls_client(port, "complete")
    read_to_end(sock, "complete", "client", "close_notify")
    with lock:
        ended = results["complete"].get("client")
    if ended == "close_notify":
        try:
            sock.settimeout(5)
            sock.unwrap()  # ours: the client's stream ends cleanly too
        except (OSError, ssl.SSLError) as exc:
            record("complete", "client", "unwrap-" + end_of(exc, sock))
    sock.close()


def client_stall(port):
    sock = tls_client(port, "stall")
    sock.sendall(os.urandom(STALL_BYTES))
    sock.setblocking(False)
    end = "none"
    deadline = time.monotonic() + LIMIT
    while end == "none" and time.monotonic() < deadline:
        try:
            sock.unwrap()  # sends close_notify, then is done once the peer's came
            end = "close_notify"
        except WANT_IO:
            select.select([sock], [], [], 0.1)
        except (OSError, ssl.SSLError) as exc:
            end = end_of(exc, sock)
    record("stall", "client", end)
    sock.close()


def main():
    mode = sys.argv[1]
    server = socket.socket()
    # A small receive buffer (accepted sockets inherit it): what the target does not read stays
    # queued in the tunnel, not in the kernel.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # A small segment size for the tunnel's connections to the target keeps the kernel's
    # send buffer of the tunnel small (on loopback it grows to megabytes with 64 KiB segments),
    # so that what the target does not read stays in the tunnel's own queue (libuv's).
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    print("target 127.0.0.1:%d" % server.getsockname()[1], flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], LIMIT)
    if not ready:
        sys.exit("tunnel_close_peer: no tunnel port")
    port = int(sys.stdin.readline())
    cases = ["download", "upload", "complete"] if mode == "stop" else ["stall"]
    clients = {"download": client_download, "upload": client_upload,
               "complete": client_complete, "stall": client_stall}
    threads = [threading.Thread(target=accept_loop, args=(server, len(cases)), daemon=True)]
    threads += [threading.Thread(target=clients[c], args=(port,), daemon=True) for c in cases]
    for t in threads:
        t.start()
    if mode == "stop":
        deadline = time.monotonic() + LIMIT
        want = {("download", "client"), ("upload", "target"), ("complete", "target")}
        while not want <= set(flowing) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("sync ready", flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], LIMIT)
        if not ready or sys.stdin.readline().strip() != "go":
            sys.exit("tunnel_close_peer: no go")
        go.set()
    for t in threads:
        t.join(LIMIT + 10)
    ok = True
    for c in cases:
        r = results.get(c, {})
        ok = ok and "client" in r and "target" in r
        print("case=%s client=%s target=%s got=%s" % (
            c, r.get("client", "none"), r.get("target", "none"),
            r.get("client_bytes", r.get("target_bytes", 0))), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
