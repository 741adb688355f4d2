#!/usr/bin/env bash
# The chat room across three servers on one Redis, each on its own network
# stack, with real failures.
#
# Four network namespaces: Redis in `r`, chat servers in s1, s2, s3, each
# server joined to r by its own veth link (10.79.K.0/24: r is .1, sK is .2).
# Each server runs `chat server --bus redis://10.79.K.1:6379` (examples/chat.rs,
# feature `redis`: the room's history on, member lines awaited on the bus);
# beside it, in its namespace, one `chat client` (nick uK) reads commands
# from a FIFO this script writes to and logs what it prints.
#
#   1. wait until every client's `/who` lists u1, u2, u3 (presence);
#   2. each client says BATCH numbered lines: every other client must print
#      each exactly once;
#   3. SIGKILL s3 (no goodbye): u3 must leave the others' `/who` within the
#      presence TTL (3 s) plus a heartbeat and slack (KILL_BOUND s);
#   4. cut s2 from Redis with iptables (DROP both ways, in s2) for CUT_S
#      seconds, longer than the bus's keepalive (5 s) and command timeout
#      (2 s): u2's line is reported (`error: sent here, not to the other
#      servers...`) and s2 logs the lost subscription; meanwhile u1 says
#      BATCH lines;
#   5. heal: u2 must print each of u1's lines from the cut exactly once (s2
#      catches up from the room's history), `/who` lists u1, u2 again, and a
#      last batch goes both ways exactly once;
#   6. no client printed any line twice; the servers stop on SIGTERM.
#
# Usage (as root; ./scripts/test runs it after partition.sh):  tests/hosts/bus.sh
#   ENCHUFE_SKIP_NETNS=1  skip, saying so loudly (exit 0)
#   ENCHUFE_BUS_BIN=PATH  use this chat binary instead of building it
#   ENCHUFE_MESH_KEEP=1   keep the logs directory even when the run passes
# Needs redis-server (scripts/setup installs it); installs iptables with
# apt-get when it is missing. Namespaces, links, iptables and clean-up are
# tests/hosts/lib.sh.
# Exit status: 0 passed (or explicitly skipped), 1 misbehaved, 2 cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVERS=(s1 s2 s3)
PORT=7200
REDIS_PORT=6379
BATCH=10
CUT_S=9          # > keepalive 5 s + command timeout 2 s: the cut is noticed
KILL_BOUND=8     # presence TTL 3 s + heartbeat 1 s + slack for a busy machine
WAIT=20          # seconds any single wait may take before the run fails
RUN="encb$$"     # namespace prefix, unique per run
# shellcheck source=tests/hosts/lib.sh
source tests/hosts/lib.sh
declare -A FD

say() { printf '[bus %3ss] %s\n' "$SECONDS" "$*"; }
fail() {
    echo "FAIL: $*" >&2
    for f in "$LOGS"/*.out "$LOGS"/*.err; do
        [[ -s "$f" ]] || continue
        echo "--- $f (last lines)" >&2
        tail -n 8 "$f" >&2
    done
    echo "FAIL: $*" >&2
    exit 1
}
hosts_begin "the chat room across servers on Redis"
command -v redis-server >/dev/null || unable "redis-server is not installed (scripts/setup installs it)"

# ---- namespaces and links --------------------------------------------------------
namespaces r "${SERVERS[@]}"
for k in 1 2 3; do
    veth r "to-s$k" "10.79.$k.1" "s$k" to-r "10.79.$k.2"
done
say "namespaces $RUN-{r,s1,s2,s3}; links 10.79.{1,2,3}.0/24 (r is .1, sK is .2)"
pick_iptables s2
cut() { # cut ACTION(-I|-D): every packet between s2 and Redis, both ways
    ip netns exec "$(ns s2)" "$IPT" -w "$1" INPUT -i to-r -j DROP
    ip netns exec "$(ns s2)" "$IPT" -w "$1" OUTPUT -o to-r -j DROP
}

# ---- the binary -------------------------------------------------------------------
if [[ -n "${ENCHUFE_BUS_BIN:-}" ]]; then
    BIN=$ENCHUFE_BUS_BIN
else
    say "building the chat example with the bus"
    BIN=$(cargo build --locked --workspace --all-features --example chat --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) || fail "cargo build --example chat failed"
fi
[[ -x "$BIN" ]] || unable "no chat binary (got '$BIN')"

# ---- start ----------------------------------------------------------------------------
poll() { # poll WHAT COMMAND...: every 0.1 s until it succeeds, at most $WAIT s
    local what=$1 end=$((SECONDS + WAIT))
    shift
    until "$@"; do
        alive
        ((SECONDS < end)) || fail "no $what within ${WAIT}s"
        sleep 0.1
    done
}
listening() { ip netns exec "$(ns "$1")" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }

ip netns exec "$(ns r)" redis-server --port "$REDIS_PORT" --bind 0.0.0.0 --protected-mode no \
    --save '' --appendonly no >"$LOGS/redis.log" 2>&1 &
PID[redis]=$!
poll "redis listening" listening r 127.0.0.1 "$REDIS_PORT"
for k in 1 2 3; do
    ip netns exec "$(ns "s$k")" "$BIN" server --addr "0.0.0.0:$PORT" --bus "redis://10.79.$k.1:$REDIS_PORT" \
        >"$LOGS/s$k.out" 2>"$LOGS/s$k.err" &
    PID[s$k]=$!
done
for k in 1 2 3; do poll "server s$k listening" listening "s$k" 127.0.0.1 "$PORT"; done
for k in 1 2 3; do
    mkfifo "$LOGS/u$k.in"
    exec {fd}<>"$LOGS/u$k.in" # read-write: never blocks, outlives its reader
    FD[u$k]=$fd
    ip netns exec "$(ns "s$k")" "$BIN" client --addr "127.0.0.1:$PORT" --nick "u$k" \
        <"$LOGS/u$k.in" >"$LOGS/u$k.out" 2>"$LOGS/u$k.err" &
    PID[u$k]=$!
done
tell() { printf '%s\n' "$2" >&"${FD[$1]}"; }
out() { printf '%s/%s.out' "$LOGS" "$1"; }
lines() { wc -l <"$(out "$1")"; }
# printed USER MARK LINE: USER printed exactly LINE after line MARK.
printed() { awk -v m="$2" -v l="$3" 'NR > m && $0 == l { f = 1 } END { exit !f }' "$(out "$1")"; }
# who USER LIST: asks /who, true once an answer after it is `here: LIST`.
who() {
    local m
    m=$(lines "$1")
    tell "$1" /who
    sleep 0.3
    printed "$1" "$m" "here: $2"
}

poll "every /who listing u1, u2, u3" who u1 "u1, u2, u3"
poll "u3's /who listing everyone" who u3 "u1, u2, u3"
say "three servers, one room: /who lists u1, u2, u3"

# batch TAG FROM... to TO...: each FROM says BATCH lines; each TO (not the
# sender) must print `FROM: TAG-FROM-I` exactly once.
batch() {
    local tag=$1 from to i
    shift
    local senders=() receivers=()
    while [[ $1 != to ]]; do senders+=("$1"); shift; done
    shift
    receivers=("$@")
    for from in "${senders[@]}"; do
        for ((i = 1; i <= BATCH; i++)); do tell "$from" "$tag-$from-$i"; done
    done
    arrived() {
        for from in "${senders[@]}"; do
            for to in "${receivers[@]}"; do
                [[ $from == "$to" ]] && continue
                [[ $(grep -c "^$from: $tag-$from-" "$(out "$to")") -eq $BATCH ]] || return 1
            done
        done
    }
    poll "batch $tag (${senders[*]} to ${receivers[*]})" arrived
    say "batch $tag: ${senders[*]} to ${receivers[*]}, $BATCH lines each, all arrived"
}

batch m1 u1 u2 u3 to u1 u2 u3

# ---- SIGKILL s3 -------------------------------------------------------------------------
kill -9 "${PID[s3]}"
wait "${PID[s3]}" 2>/dev/null || true
unset 'PID[s3]'
killed_at=$SECONDS
# Its client sees its server go and exits; that is expected.
kill -9 "${PID[u3]}" 2>/dev/null || true
wait "${PID[u3]}" 2>/dev/null || true
unset 'PID[u3]'
say "SIGKILL s3"
poll "u3 gone from u1's /who" who u1 "u1, u2"
poll "u3 gone from u2's /who" who u2 "u1, u2"
gone_s=$((SECONDS - killed_at))
say "u3 left presence after ${gone_s}s (bound ${KILL_BOUND}s)"
((gone_s <= KILL_BOUND)) || fail "u3 left presence after ${gone_s}s, over ${KILL_BOUND}s"

# ---- cut s2 from Redis ----------------------------------------------------------------------
m2=$(lines u2)
s2err=$(wc -l <"$LOGS/s2.err")
cut -I
say "s2 cut from Redis (iptables DROP in $(ns s2))"
tell u2 "said-while-cut"
batch m2 u1 to u1
poll "u2's line reported as not sent" \
    awk -v m="$m2" 'NR > m && /^error: sent here, not to the other servers/ { f = 1 } END { exit !f }' "$(out u2)"
say "u2's line during the cut was reported: $(awk -v m="$m2" 'NR > m && /^error: /' "$(out u2)" | head -n 1)"
sleep "$CUT_S"
tail -n "+$((s2err + 1))" "$LOGS/s2.err" | grep -q 'redis subscription' ||
    fail "s2 did not report its lost subscription within ${CUT_S}s of the cut"
say "s2 reported its lost subscription: $(tail -n "+$((s2err + 1))" "$LOGS/s2.err" | grep -m 1 -o 'redis subscription[^"]*')"
cut -D
say "s2 healed after ${CUT_S}s"
caught_up() { [[ $(grep -c "^u1: m2-u1-" "$(out u2)") -eq $BATCH ]]; }
poll "u2 getting u1's lines from the cut (catch-up)" caught_up
say "u2 got all $BATCH of u1's lines from the cut"
poll "u1's /who listing u2 again" who u1 "u1, u2"
batch m3 u1 u2 to u1 u2

# ---- stop and check ----------------------------------------------------------------------------
for u in u1 u2; do
    dup=$(grep -v '^here: \|^error: \|^\* ' "$(out "$u")" | sort | uniq -d | head -n 1)
    [[ -z "$dup" ]] || fail "$u printed a line twice: $dup"
done
# SIGTERM: a client leaves the room and exits 0, a server stops 0.
for n in u1 u2 s1 s2; do
    kill -TERM "${PID[$n]}"
    timeout 20 tail --pid="${PID[$n]}" -f /dev/null || fail "$n did not stop"
    rc=0
    wait "${PID[$n]}" || rc=$?
    unset "PID[$n]"
    ((rc == 0)) || fail "$n exited with status $rc"
done
say "PASS: one room over three namespaces; s3 killed (gone from presence in ${gone_s}s); s2 cut for ${CUT_S}s (reported, then caught up); every line once; total ${SECONDS}s"
