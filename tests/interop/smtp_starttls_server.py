#!/usr/bin/env python3
"""A tiny SMTP-ish server for the STARTTLS interop test (standard library only).

It speaks just enough SMTP (RFC 5321 replies, RFC 3207 STARTTLS) for `tlsock connect
--starttls smtp`: a multi-line 220 greeting, a multi-line 250 reply to EHLO, 220 to STARTTLS,
then TLS with the given certificate, where it answers one line with "echo: LINE" and waits for
the client's close_notify. Replies are sent in small pieces with pauses, so that the client's
line reader has to put lines together from several reads.

    smtp_starttls_server.py CERT KEY MODE

MODE is one of:
    ok            the exchange above
    no-starttls   the EHLO reply does not offer STARTTLS
    refuse        STARTTLS is offered but answered with 454
    silent        no greeting at all (the client's --timeout must end it)

The first line on stdout is "listening on 127.0.0.1:PORT". Every socket operation has a
timeout, and each connection is served in its own daemon thread; the test kills the process.
"""
import socket
import ssl
import sys
import threading
import time

IO_TIMEOUT = 10.0

GREETING = b"220-smtp.test ESMTP tlsock interop server\r\n220 ready when you are\r\n"
EHLO_OK = b"250-smtp.test greets tlsock.invalid\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
EHLO_NO_TLS = b"250-smtp.test greets tlsock.invalid\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def send_in_pieces(sock, data):
    """Sends data a few bytes at a time, so that lines straddle the client's reads."""
    for i in range(0, len(data), 7):
        sock.sendall(data[i:i + 7])
        time.sleep(0.002)


def read_line(sock):
    """Reads one CRLF line byte by byte: nothing past it may be consumed before TLS starts."""
    line = b""
    while not line.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            raise EOFError("client closed during the SMTP preamble")
        line += b
        if len(line) > 1000:
            raise ValueError("line too long")
    return line.rstrip(b"\r\n")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tls_phase(raw, context):
    tls = context.wrap_socket(raw, server_side=True)
    data = b""
    while not data.endswith(b"\n"):
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    log("tls line: %r" % data)
    tls.sendall(b"echo: " + data)
    # Wait for the client's close_notify (recv returns b""), then answer it with ours.
    while tls.recv(4096):
        pass
    try:
        tls.unwrap()
    except (ssl.SSLError, OSError):
        pass
    log("tls closed cleanly")


def serve(raw, context, mode):
    raw.settimeout(IO_TIMEOUT)
    try:
        if mode == "silent":
            # Hold the connection without a word until the client gives up.
            while raw.recv(4096):
                pass
            return
        send_in_pieces(raw, GREETING)
        ehlo = read_line(raw)
        log("got %r" % ehlo)
        if not ehlo.upper().startswith(b"EHLO "):
            raw.sendall(b"500 5.5.1 expected EHLO\r\n")
            return
        send_in_pieces(raw, EHLO_NO_TLS if mode == "no-starttls" else EHLO_OK)
        cmd = read_line(raw)
        log("got %r" % cmd)
        if cmd.upper() != b"STARTTLS":
            raw.sendall(b"500 5.5.1 unexpected command\r\n")
            return
        if mode == "refuse":
            raw.sendall(b"454 4.7.0 TLS not available due to temporary reason\r\n")
            return
        send_in_pieces(raw, b"220 2.0.0 Ready to start TLS\r\n")
        tls_phase(raw, context)
    except (OSError, EOFError, ValueError) as e:
        log("connection ended: %s" % e)
    finally:
        raw.close()


def main():
    cert, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode not in ("ok", "no-starttls", "refuse", "silent"):
        sys.exit("unknown mode %s" % mode)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lis.bind(("127.0.0.1", 0))
    lis.listen(8)
    print("listening on 127.0.0.1:%d" % lis.getsockname()[1], flush=True)
    while True:
        conn, _ = lis.accept()
        threading.Thread(target=serve, args=(conn, context, mode), daemon=True).start()


if __name__ == "__main__":
    main()
