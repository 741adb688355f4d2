#!/usr/bin/env python3
"""Multiplexed-profile enchufe client, written from docs/PROTOCOL.md alone.

Standard library only; it never looked at the Rust sources, so it checks that
the spec is complete enough to interoperate with. It connects, exchanges
hellos (version 1, empty node id), sends every notify and then every request
back-to-back (ids 1, 2, ... in order) from the main thread, while a reader
thread matches responses and errors to their ids (in any order) and collects
pushes. Once every request is answered and N pushes arrived it half-closes
(shutdown SHUT_WR) and reads until the server closes, keeping later pushes.

CLI: mux_client.py --port PORT [--host HOST] [--requests FILE]
                   [--notify FILE] [--expect-pushes N] [--timeout SECONDS]
  --host           server address (default 127.0.0.1; IPv6 if it contains ':')
  --requests       JSON list of strings: request bodies, sent as UTF-8
  --notify         JSON list of strings: notify bodies, sent before requests
  --expect-pushes  pushes to wait for before half-closing (default 0)
  --timeout        socket timeout and overall limit in seconds (default 30)

Stdout gets one JSON line (ASCII, non-ASCII text is \\u-escaped):
  {"responses": {"<id>": {"ok": "<body>"}
                       | {"error": {"code": <int>, "message": "<text>"}}},
   "order": [<ids in arrival order>], "pushes": ["<text>", ...], "eof": true}
Exit codes: 0 ok; 1 connection failure, or the server closed before every
request was answered / N pushes arrived; 2 bad input or protocol violation
(short frame, unknown kind, kind not allowed server->client, EOF inside a
frame, oversize frame, bad hello, reply for an unknown id, invalid UTF-8);
3 timeout; 4 not an enchufe peer (wrong magic); 5 version mismatch.
Every failure writes a message to stderr and prints no JSON.
"""
import argparse, json, os, socket, struct, sys, threading, time

MAGIC, VERSION = b"ENCH", 1
MAX_PAYLOAD = 8 * 1024 * 1024              # default limit from the spec
REQUEST, RESPONSE, ERROR, NOTIFY, PUSH, CANCEL = range(1, 7)
KIND_NAMES = {REQUEST: "request", NOTIFY: "notify", CANCEL: "cancel"}
MSG_HEADER = struct.Struct(">BQ")          # kind, request id: 9 bytes


def die(code, message):
    """Report on stderr and end the whole process at once (any thread)."""
    sys.stderr.write("mux_client: %s\n" % message); sys.stderr.flush()
    os._exit(code)


def io_failed(err, doing):
    """A socket error: exit 3 if it was the socket timeout, else exit 1."""
    die(3 if isinstance(err, socket.timeout) else 1, "%s: %s" % (doing, err or "timed out"))


def recv_exact(sock, n, at_boundary):
    """Read exactly n bytes; None on a clean EOF (only if at_boundary)."""
    buf = bytearray(n); view, got = memoryview(buf), 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], min(n - got, 1 << 20))
        except OSError as e:
            io_failed(e, "receive failed")
        if k == 0:
            if at_boundary and got == 0:
                return None
            die(2, "protocol violation: EOF inside a frame")
        got += k
    return bytes(buf)


def read_frame(sock):
    """One frame's payload, or None if the stream ended between frames."""
    header = recv_exact(sock, 4, True)
    if header is None:
        return None
    (n,) = struct.unpack(">I", header)
    if n > MAX_PAYLOAD:
        die(2, "protocol violation: frame of %d bytes exceeds limit %d" % (n, MAX_PAYLOAD))
    return recv_exact(sock, n, False)


def send_frame(sock, payload):
    """Send one frame: 4-byte big-endian length, then the payload."""
    try:
        sock.sendall(struct.pack(">I", len(payload)) + payload)
    except OSError as e:
        io_failed(e, "send failed")


def text(raw, what):
    """Decode UTF-8 text from the server; invalid UTF-8 is fatal (exit 2)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        die(2, "%s is not valid UTF-8" % what)


def check_hello(payload):
    """Validate the server's hello: magic, version 1, flags, node id."""
    if payload is None:
        die(2, "protocol violation: server closed before its hello")
    if payload[:4] != MAGIC:
        die(4, "not an enchufe peer: hello starts with %r, not %r" % (payload[:4], MAGIC))
    if len(payload) < 7:
        die(2, "protocol violation: hello of %d bytes, need at least 7" % len(payload))
    if payload[4] != VERSION:
        die(5, "version mismatch: server speaks version %d, this client version %d"
            % (payload[4], VERSION))
    if len(payload) != 7 + payload[6]:         # flags (payload[5]) are ignored
        die(2, "protocol violation: hello of %d bytes, node id length %d"
            % (len(payload), payload[6]))
    text(payload[7:], "server node id")


class State:
    def __init__(self, n_requests):
        self.cond, self.eof = threading.Condition(), False
        self.pending = set(range(1, n_requests + 1))   # ids still awaiting a reply
        self.responses, self.order, self.pushes = {}, [], []


def reader(sock, st):
    """Read frames until EOF, dispatching them into st; die on violations."""
    while True:
        payload = read_frame(sock)
        if payload is None:                     # clean close between frames
            with st.cond:
                st.eof = True
                st.cond.notify_all()
            return
        if len(payload) < MSG_HEADER.size:
            die(2, "protocol violation: frame of %d bytes, shorter than 9" % len(payload))
        kind, rid = MSG_HEADER.unpack_from(payload)
        body = payload[MSG_HEADER.size:]
        if kind in KIND_NAMES:
            die(2, "protocol violation: kind %d (%s) may not travel server->client"
                % (kind, KIND_NAMES[kind]))
        if kind not in (RESPONSE, ERROR, PUSH):
            die(2, "protocol violation: unknown frame kind %d" % kind)
        if kind == PUSH:
            if rid != 0:
                die(2, "protocol violation: push with id %d, not 0" % rid)
            item = text(body, "push body")
        elif kind == RESPONSE:
            item = {"ok": text(body, "response body of id %d" % rid)}
        else:
            if not body:
                die(2, "protocol violation: error frame for id %d has no code" % rid)
            item = {"error": {"code": body[0],
                              "message": text(body[1:], "error message of id %d" % rid)}}
        with st.cond:
            if kind == PUSH:
                st.pushes.append(item)
            elif rid not in st.pending:
                die(2, "reply (kind %d) for unknown or already answered id %d" % (kind, rid))
            else:
                st.pending.discard(rid)
                st.responses[str(rid)] = item
                st.order.append(rid)
            st.cond.notify_all()


def load_list(path, what):
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        die(2, "cannot read %s file %s: %s" % (what, path, e))
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        die(2, "%s file %s must hold a JSON list of strings" % (what, path))
    return data


def main():
    ap = argparse.ArgumentParser(description="enchufe multiplexed-profile client")
    ap.add_argument("--host", default="127.0.0.1", help="IPv6 if it contains ':'")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", metavar="FILE", help="JSON list of request bodies")
    ap.add_argument("--notify", metavar="FILE", help="JSON list of notify bodies")
    ap.add_argument("--expect-pushes", type=int, default=0, metavar="N")
    ap.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    args = ap.parse_args()
    requests = load_list(args.requests, "requests")
    notifies = load_list(args.notify, "notify")

    def watchdog():
        time.sleep(args.timeout)
        die(3, "overall timeout of %s s reached" % args.timeout)
    threading.Thread(target=watchdog, daemon=True).start()

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect((args.host, args.port))
    except OSError as e:
        io_failed(e, "cannot connect to %s port %d" % (args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # Hello: both sides send at once, then read the other's before anything else.
    send_frame(sock, MAGIC + bytes([VERSION, 0, 0]))
    check_hello(read_frame(sock))

    st = State(len(requests))
    thread = threading.Thread(target=reader, args=(sock, st), daemon=True)
    thread.start()
    for body in notifies:
        send_frame(sock, MSG_HEADER.pack(NOTIFY, 0) + body.encode("utf-8"))
    for rid, body in enumerate(requests, start=1):
        send_frame(sock, MSG_HEADER.pack(REQUEST, rid) + body.encode("utf-8"))

    with st.cond:
        st.cond.wait_for(lambda: st.eof or
                         (not st.pending and len(st.pushes) >= args.expect_pushes))
        if st.pending or len(st.pushes) < args.expect_pushes:
            die(1, "server closed early: %d request(s) unanswered, %d push(es) of %d"
                % (len(st.pending), len(st.pushes), args.expect_pushes))
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass                                   # the server may already be gone
    thread.join()                              # reads until the server closes
    sock.close()
    print(json.dumps({"responses": st.responses, "order": st.order,
                      "pushes": st.pushes, "eof": True}), flush=True)


if __name__ == "__main__":
    main()
