#!/usr/bin/env python3
"""Course-style Python UDP client, used for enchufe's UDP interop tests.

It follows the course's UDP client: a SOCK_DGRAM socket, sendto() the
server's address, then recvfrom() for the reply. For each message in a JSON
list it sends one datagram and waits for one reply, then prints the replies
as JSON.

CLI:
  udp_client.py --port PORT --messages JSON [--host HOST] [--timeout SECONDS]

  --host      server address (default 127.0.0.1; IPv6 if it contains ':')
  --port      server port
  --messages  a JSON list of strings to send, one datagram each
  --timeout   seconds to wait for each reply (default 10); exit code 3 if
              one does not come

Stdout: {"received": [...], "from_server": true} once every reply arrived;
"from_server" says every reply came from the address the messages went to.
"""
import argparse
import json
import socket
import sys

MAXSIZE = 65535


def main():
    ap = argparse.ArgumentParser(description="Course-style UDP client")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(args.timeout)
    received, from_server = [], True
    for mensaje in json.loads(args.messages):
        s.sendto(mensaje.encode("utf-8"), (args.host, args.port))
        try:
            data, direccion = s.recvfrom(MAXSIZE)
        except socket.timeout:
            print(f"no reply to {mensaje!r} within {args.timeout}s", file=sys.stderr, flush=True)
            return 3
        from_server = from_server and direccion[1] == args.port
        received.append(data.decode("utf-8"))
    s.close()
    print(json.dumps({"received": received, "from_server": from_server}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
