#!/usr/bin/env python3
"""Course-style threaded Python echo server, used for enchufe interop tests.

It follows the `Server` class from a course on Python sockets: each message
is a 4-byte big-endian unsigned length followed by that many UTF-8 bytes.
One daemon thread accepts, one daemon thread per client reads frames, and
every non-empty message gets the reply `"echo:" + message`, framed the same
way, in request order. Empty messages are counted but get no reply. Unlike
the course code, EOF (recv() == b'') ends the connection cleanly and a short
read of the 4-byte header keeps reading.

CLI:
  course_server.py [--host HOST] [--port PORT] [--greeting TEXT]
                   [--max-clients N] [--timeout SECONDS]

  --host         address to bind (default 127.0.0.1; IPv6 if it contains ':')
  --port         port to bind (default 0 = ephemeral)
  --greeting     text pushed unprompted as one frame to each new client
  --max-clients  exit 0 once N clients have connected and all disconnected
                 (default 1)
  --timeout      hard limit in seconds (default 30); exit code 3 when hit

Stdout (each line flushed):
  PORT <number>   once, after listening
  CLOSED <count>  when a client disconnects (frames received from it)
  DONE            just before a normal exit
Malformed frames (EOF inside a frame, invalid UTF-8) are reported on stderr
and end that client's connection.
"""
import argparse
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


class Server:
    def __init__(self, host, port, greeting=None, max_clients=1):
        self.host, self.port = host, port
        self.greeting, self.max_clients = greeting, max_clients
        self.cond = threading.Condition()
        self.print_lock = threading.Lock()
        self.connected = self.active = 0
        self.server_socket = None

    def say(self, line, stream=None):
        with self.print_lock:
            print(line, file=stream or sys.stdout, flush=True)

    def bind_and_listen(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.server_socket = socket.socket(family, socket.SOCK_STREAM)
        self.server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server_socket.bind((self.host, self.port))
        self.server_socket.listen()
        self.port = self.server_socket.getsockname()[1]
        self.say(f"PORT {self.port}")
        threading.Thread(target=self.accept_connections_thread, daemon=True).start()

    def accept_connections_thread(self):
        for _ in range(self.max_clients):
            client_socket, _addr = self.server_socket.accept()
            with self.cond:
                self.connected += 1
                self.active += 1
            threading.Thread(target=self.listen_client_thread,
                             args=(client_socket,), daemon=True).start()

    def listen_client_thread(self, client_socket):
        count = 0
        try:
            if self.greeting is not None:
                self.send(self.greeting, client_socket)
            while True:
                header = recv_exact(client_socket, 4)
                if header is None:
                    break  # clean EOF between frames
                (length,) = struct.unpack(">I", header)
                body = recv_exact(client_socket, length) if length else b""
                if body is None:
                    raise ConnectionError(f"EOF before body of {length} bytes")
                count += 1
                received = body.decode("utf-8")
                if received:
                    self.send(self.handle_command(received, client_socket), client_socket)
        except (OSError, UnicodeDecodeError) as exc:
            self.say(f"client error: {exc!r}", sys.stderr)
        finally:
            try:
                client_socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client_socket.close()
            self.say(f"CLOSED {count}")
            with self.cond:
                self.active -= 1
                self.cond.notify_all()

    def handle_command(self, received, client_socket):
        return "echo:" + received

    def send(self, value, sock):
        payload = str(value).encode("utf-8")
        sock.sendall(struct.pack(">I", len(payload)) + payload)

    def wait_until_done(self):
        with self.cond:
            while self.connected < self.max_clients or self.active:
                self.cond.wait()
        self.server_socket.close()
        self.say("DONE")


def main():
    ap = argparse.ArgumentParser(description="Course-style framed echo server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--greeting", default=None)
    ap.add_argument("--max-clients", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    def watchdog():
        time.sleep(args.timeout)
        print(f"timeout after {args.timeout}s", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    server = Server(args.host, args.port, args.greeting, args.max_clients)
    server.bind_and_listen()
    server.wait_until_done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
