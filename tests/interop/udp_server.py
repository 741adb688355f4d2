#!/usr/bin/env python3
"""Course-style Python UDP server, used for enchufe's UDP interop tests.

It follows the course's UDP server: one SOCK_DGRAM socket, bound, then a
loop of recvfrom() and sendto() back to the address each datagram came
from. One datagram is one UTF-8 message, nothing added. Each message gets
the reply "echo:" + message, except "big:N", which gets N bytes of "x" (to
test a reply over the client's limit).

CLI:
  udp_server.py [--host HOST] [--port PORT] [--count N] [--timeout SECONDS]

  --host     address to bind (default 127.0.0.1; IPv6 if it contains ':')
  --port     port to bind (default 0 = ephemeral)
  --count    exit 0 after answering N datagrams (default 1)
  --timeout  hard limit in seconds (default 30); exit code 3 when hit

Stdout (each line flushed):
  PORT <number>  once, after binding
  DONE           just before a normal exit
"""
import argparse
import os
import socket
import sys
import threading
import time

MAXSIZE = 65535


def main():
    ap = argparse.ArgumentParser(description="Course-style UDP echo server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    def watchdog():
        time.sleep(args.timeout)
        print(f"timeout after {args.timeout}s", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((args.host, args.port))
    print(f"PORT {s.getsockname()[1]}", flush=True)

    for _ in range(args.count):
        data, addr = s.recvfrom(MAXSIZE)
        mensaje = data.decode("utf-8")
        if mensaje.startswith("big:"):
            respuesta = "x" * int(mensaje[4:])
        else:
            respuesta = "echo:" + mensaje
        s.sendto(respuesta.encode("utf-8"), addr)
    s.close()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
