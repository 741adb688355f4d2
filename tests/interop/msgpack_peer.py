#!/usr/bin/env python3
"""Typed objects as MessagePack between Python and enchufe (MsgPack<T>).

The course's pickle lesson sends a `Persona` object through a socket; here
the object is a dict packed with the `msgpack` package (pickle is Python
only), framed as in the course: a 4-byte big-endian length, then the bytes.
Standard library plus `msgpack` (scripts/test installs it).

CLI:
  msgpack_peer.py server [--timeout SECONDS]
      Listens on 127.0.0.1:0 and prints `PORT <n>`. Serves one connection:
      pushes GREETING first, then answers every frame (a persona) with
      `answer(persona)`. At EOF prints one JSON line
      {"received": [<personas as received>]} and exits 0.
  msgpack_peer.py client --port PORT --objects FILE [--timeout SECONDS]
      Sends every persona in FILE (a JSON list), reads one reply per persona,
      half-closes, and prints {"replies": [...]}.

Every frame received must unpack to a dict with string keys whose values
have the types a persona has (a float stays a float); otherwise the script
says why on stderr and exits 2. Exit 3 is a timeout; exit 5 means the
`msgpack` package is missing.
"""
import argparse
import json
import socket
import struct
import sys

# The course framing's exact read, and the exit-3 timeout.
from course_client import recv_exact, start_watchdog

try:
    import msgpack
except ImportError:
    print(
        "the Python package `msgpack` is missing: run scripts/test, or "
        "python3 -m pip install msgpack",
        file=sys.stderr,
    )
    sys.exit(5)

GREETING = {
    "nombre": "Servidor del curso",
    "mail": "servidor@curso.cl",
    "edad": 3,
    "altura": 9.141592653589793,
    "tags": ["ñandú", "🦀"],
    "jefe": None,
    "puntos": {"uno": 1, "menos": -(2**40)},
}

TYPES = {
    "nombre": str,
    "mail": str,
    "edad": int,
    "altura": float,
    "tags": list,
    "jefe": (dict, type(None)),
    "puntos": dict,
}


def check_persona(obj, where):
    """Raise ValueError unless obj is a dict shaped like a persona."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a dict, got {type(obj).__name__}")
    if set(obj) != set(TYPES):
        raise ValueError(f"{where}: keys {sorted(obj)}, expected {sorted(TYPES)}")
    for key, kind in TYPES.items():
        if not isinstance(obj[key], kind):
            raise ValueError(f"{where}: {key} is a {type(obj[key]).__name__}")
    if obj["jefe"] is not None:
        check_persona(obj["jefe"], where + ".jefe")


def answer(persona):
    """What both the Python server and the enchufe test server reply."""
    reply = dict(persona)
    reply["nombre"] = persona["nombre"].upper()
    reply["edad"] = persona["edad"] + 1
    reply["tags"] = persona["tags"] + ["visto"]
    return reply


def recv_frame(sock):
    header = recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    body = recv_exact(sock, length) if length else b""
    if body is None:
        raise ConnectionError(f"EOF before a body of {length} bytes")
    return body


def send_obj(sock, obj):
    payload = msgpack.packb(obj)
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def unpack(body, where):
    obj = msgpack.unpackb(body)
    check_persona(obj, where)
    return obj


def serve(timeout):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(timeout)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    conn, _ = listener.accept()
    conn.settimeout(timeout)
    received = []
    with conn:
        send_obj(conn, GREETING)
        while (body := recv_frame(conn)) is not None:
            persona = unpack(body, f"frame {len(received)}")
            received.append(persona)
            send_obj(conn, answer(persona))
    listener.close()
    print(json.dumps({"received": received}), flush=True)


def client(port, objects, timeout):
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.settimeout(timeout)
        for i, persona in enumerate(objects):
            send_obj(sock, persona)
            body = recv_frame(sock)
            if body is None:
                raise ConnectionError(f"server closed before reply {i}")
            replies.append(unpack(body, f"reply {i}"))
        sock.shutdown(socket.SHUT_WR)
        if recv_frame(sock) is not None:
            raise ValueError("a frame after the last reply")
    print(json.dumps({"replies": replies}), flush=True)


def main():
    ap = argparse.ArgumentParser(description="MessagePack interop with enchufe")
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--objects")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    start_watchdog(args.timeout)
    try:
        if args.mode == "server":
            serve(args.timeout)
        else:
            with open(args.objects, encoding="utf-8") as f:
                objects = json.load(f)
            client(args.port, objects, args.timeout)
    except socket.timeout:
        print(f"timeout after {args.timeout}s", file=sys.stderr)
        return 3
    except (OSError, ValueError, msgpack.UnpackException) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
