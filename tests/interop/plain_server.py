#!/usr/bin/env python3
"""A plaintext TCP server for the tunnel tests (standard library only).

    plain_server.py MODE

MODE is one of:
    halfclose  each client is read until it ends its half of the connection (FIN); only then
               is the answer sent, "received N bytes sha256 HEX" and a newline, and the
               connection closed. A reply that arrives proves that the end of the client's
               stream came through the tunnel as an end of stream and that the other direction
               still worked after it. A client that sends nothing and keeps its half open gets
               nothing: a silent peer for idle timeouts.
    echo       every byte goes back, written before the next read (so a client that does not
               read stops this server from reading); the connection ends after the client's FIN.
    double     as echo, but every piece goes back twice (the statistics tell the directions
               apart).

The first line on stdout is "listening on 127.0.0.1:PORT". Every socket operation has a
timeout, and each connection is served in its own daemon thread; the test kills the process.
"""
import hashlib
import socket
import sys
import threading

IO_TIMEOUT = 20.0


def echo(conn, times=1):
    with conn:
        conn.settimeout(IO_TIMEOUT)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data * times)
            conn.shutdown(socket.SHUT_WR)
        except OSError as exc:
            print("plain_server: %s" % exc, file=sys.stderr, flush=True)


def halfclose(conn):
    with conn:
        conn.settimeout(IO_TIMEOUT)
        digest = hashlib.sha256()
        total = 0
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                digest.update(data)
                total += len(data)
            conn.sendall(b"received %d bytes sha256 %s\n" % (total, digest.hexdigest().encode()))
            conn.shutdown(socket.SHUT_WR)
        except OSError as exc:
            print("plain_server: %s" % exc, file=sys.stderr, flush=True)


def main():
    serve = {"halfclose": halfclose, "echo": echo, "double": lambda c: echo(c, 2)}[sys.argv[1]]
    lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lis.bind(("127.0.0.1", 0))
    lis.listen(16)
    print("listening on 127.0.0.1:%d" % lis.getsockname()[1], flush=True)
    while True:
        conn, _ = lis.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
