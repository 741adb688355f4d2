#!/usr/bin/env python3
"""Course-style threaded Python client, used for enchufe interop tests.

It follows the `Client` class from a course on Python sockets: each message
is a 4-byte big-endian unsigned length followed by that many UTF-8 bytes,
and a listening thread reads frames while the main thread sends. Unlike the
course code, EOF (recv() == b'') ends the listener cleanly and a short read
of the 4-byte header keeps reading.

CLI:
  course_client.py --port PORT [--host HOST] [--messages FILE]
                   [--expect N] [--timeout SECONDS]

  --host      server address (default 127.0.0.1; IPv6 literals like ::1 work)
  --port      server port (required)
  --messages  JSON file holding a list of strings (default: send nothing)
  --expect    number of frames to wait for before half-closing (default 0)
  --timeout   socket timeout and overall limit in seconds (default 30)

It sends all messages back-to-back (one sendall of header+body each), waits
for N frames, then shutdown(SHUT_WR) and reads until the server closes,
keeping any extra frames. Stdout gets one JSON line:
  {"received": [<frames in order>], "eof": true}
Exit codes: 0 ok; 1 server closed before N frames arrived (JSON still
printed); 2 bad input, invalid UTF-8 or malformed frame (message on stderr);
3 timeout.
"""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

CHUNK = 4096


def recv_exact(sock, n, chunk=CHUNK):
    """Read exactly n bytes; None on EOF before the first byte, else raise."""
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(min(chunk, n - len(buf)))
        if not data:
            if not buf:
                return None
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


class Client:
    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.received = []
        self.eof = False
        self.error = None  # (exit code, message)
        self.cond = threading.Condition()
        self.client_socket = None
        self.listener = None

    def connect(self):
        self.client_socket = socket.create_connection((self.host, self.port), self.timeout)
        self.client_socket.settimeout(self.timeout)
        self.listener = threading.Thread(target=self.listen_thread, daemon=True)
        self.listener.start()

    def listen_thread(self):
        try:
            while True:
                header = recv_exact(self.client_socket, 4)
                if header is None:
                    break
                (length,) = struct.unpack(">I", header)
                body = recv_exact(self.client_socket, length) if length else b""
                if body is None:
                    raise ConnectionError(f"EOF before body of {length} bytes")
                with self.cond:
                    self.received.append(body.decode("utf-8"))
                    self.cond.notify_all()
        except socket.timeout:
            self.error = (3, f"timeout after {self.timeout}s waiting for data")
        except (OSError, UnicodeDecodeError) as exc:
            self.error = (2, f"malformed frame or connection error: {exc!r}")
        with self.cond:
            self.eof = self.error is None
            self.cond.notify_all()

    def send(self, value, sock=None):
        payload = str(value).encode("utf-8")
        (sock or self.client_socket).sendall(struct.pack(">I", len(payload)) + payload)

    def wait_for(self, n):
        with self.cond:
            while len(self.received) < n and not self.eof and self.error is None:
                self.cond.wait()

    def finish(self):
        self.client_socket.shutdown(socket.SHUT_WR)
        self.listener.join()
        self.client_socket.close()


def start_watchdog(seconds):
    """Exit with code 3 after `seconds`, whatever the script is doing."""

    def watchdog():
        time.sleep(seconds)
        print(f"timeout after {seconds}s", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description="Course-style framed client")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", default=None)
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    start_watchdog(args.timeout)
    messages = []
    if args.messages:
        try:
            with open(args.messages, encoding="utf-8") as f:
                messages = json.load(f)
            if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
                raise ValueError("--messages must hold a JSON list of strings")
            for m in messages:
                m.encode("utf-8")  # reject lone surrogates before connecting
        except (OSError, ValueError) as exc:
            print(f"bad --messages: {exc}", file=sys.stderr)
            return 2

    client = Client(args.host, args.port, args.timeout)
    try:
        client.connect()
        for m in messages:
            client.send(m)
        client.wait_for(args.expect)
        if client.error is None:
            client.finish()
    except socket.timeout:
        client.error = client.error or (3, f"timeout after {args.timeout}s")
    except OSError as exc:
        client.error = client.error or (2, f"connection error: {exc!r}")
    if client.error is not None:
        print(client.error[1], file=sys.stderr)
        return client.error[0]
    print(json.dumps({"received": client.received, "eof": client.eof}), flush=True)
    if len(client.received) < args.expect:
        print(f"EOF after {len(client.received)} of {args.expect} frames", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
