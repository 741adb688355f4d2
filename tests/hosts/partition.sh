#!/usr/bin/env bash
# A MultiClient and three servers on separate network stacks, one server cut
# off with iptables and then healed.
#
# Four network namespaces: a client `c` and servers s1, s2, s3, each server
# joined to the client by its own veth link (10.78.K.0/24: c is .1, sK is .2).
# The servers run `partition_probe serve` (tests/hosts/probe.rs), answering
# `sK:N` to the request `N` and printing `got N`; the client runs
# `partition_probe client`, a MultiClient sending requests 0, 1, 2... to each
# server (one stream per server, one request every 50 ms), printing one line
# per outcome and `event sK down|up`.
#
#   1. wait until every server has answered;
#   2. DROP everything on the c-s2 link (both directions, in c): s2 must be
#      reported down within the silence deadline (2.25 x SILENCE_MS, plus one
#      round and a second of slack for a loaded machine), while s1 and s3
#      answer every request throughout;
#   3. remove the rules: s2 must be reported up and answer again;
#   4. stop the client (SIGTERM) and check the logs: each (server, N)
#      has exactly one outcome (a reply or a typed error), every reply is the
#      right one and was received by its server, and no server received a
#      request twice.
#
# Usage (as root; ./scripts/test runs it after mesh.sh, and CI runs that):
#   tests/hosts/partition.sh
#   ENCHUFE_SKIP_NETNS=1    skip, saying so loudly (exit 0)
#   ENCHUFE_PROBE_BIN=PATH  use this binary instead of building the example
#   ENCHUFE_MESH_KEEP=1     keep the logs directory even when the run passes
# Installs iptables with apt-get when it is missing.
# The checks, namespaces, links, iptables and clean-up are tests/hosts/lib.sh,
# shared with tests/hosts/mesh.sh.
# Exit status: 0 passed (or explicitly skipped), 1 misbehaved, 2 cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVERS=(s1 s2 s3)
PORT=7100
SILENCE_MS=500
ROUND_MS=50
WAIT=20          # seconds any single wait may take before the run fails
RUN="encp$$"     # namespace prefix, unique per run
# shellcheck source=tests/hosts/lib.sh
source tests/hosts/lib.sh

say() { printf '[partition %3ss] %s\n' "$SECONDS" "$*"; }
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
hosts_begin "the MultiClient partition"

# ---- namespaces and links --------------------------------------------------------
namespaces c "${SERVERS[@]}"
for k in 1 2 3; do
    veth c "to-s$k" "10.78.$k.1" "s$k" to-c "10.78.$k.2"
done
say "namespaces $RUN-{c,s1,s2,s3}; links 10.78.{1,2,3}.0/24 (c is .1, sK is .2)"

# ---- iptables ---------------------------------------------------------------------
pick_iptables c
block() { # block ACTION(-A|-D): every packet on the c-s2 link, both ways
    ip netns exec "$(ns c)" "$IPT" -w "$1" INPUT -i to-s2 -j DROP
    ip netns exec "$(ns c)" "$IPT" -w "$1" OUTPUT -o to-s2 -j DROP
}

# ---- the binaries -----------------------------------------------------------------
example_bin partition_probe "${ENCHUFE_PROBE_BIN:-}"

poll() { # poll WHAT COMMAND...: every 0.1 s until it succeeds, at most $WAIT s
    local what=$1 end=$((SECONDS + WAIT))
    shift
    until "$@"; do
        alive
        ((SECONDS < end)) || fail "no $what within ${WAIT}s"
        sleep 0.1
    done
}
C="$LOGS/c.out"
lines() { wc -l <"$C"; }
# saw MARK REGEX: a line of the client's log after line MARK matches REGEX.
saw() { awk -v m="$1" -v r="$2" 'NR > m && $0 ~ r { f = 1 } END { exit !f }' "$C"; }
now_ms() { date +%s%3N; }

for s in "${SERVERS[@]}"; do
    ip netns exec "$(ns "$s")" "$BIN" serve --addr "0.0.0.0:$PORT" --name "$s" \
        >"$LOGS/$s.out" 2>"$LOGS/$s.err" &
    PID[$s]=$!
done
listening() { ip netns exec "$(ns c)" bash -c "exec 3<>/dev/tcp/10.78.$1.2/$PORT" 2>/dev/null; }
for k in 1 2 3; do poll "server s$k listening" listening "$k"; done

: >"$C"
ip netns exec "$(ns c)" "$BIN" client --server "s1=10.78.1.2:$PORT" --server "s2=10.78.2.2:$PORT" \
    --server "s3=10.78.3.2:$PORT" --round-ms "$ROUND_MS" --silence-ms "$SILENCE_MS" \
    </dev/null >"$C" 2>"$LOGS/c.err" &
PID[c]=$!
for s in "${SERVERS[@]}"; do poll "reply from $s" saw 0 "^reply $s 20 "; done
say "all three answer"

# ---- partition s2 ---------------------------------------------------------------------
mark=$(lines)
block -A
cut_at=$(now_ms)
say "c-s2 link cut (iptables DROP in $(ns c))"
poll "s2 reported down" saw "$mark" '^event s2 down$'
down_ms=$(($(now_ms) - cut_at))
bound=$((SILENCE_MS * 9 / 4 + ROUND_MS + 1000))
say "s2 reported down after ${down_ms} ms (bound ${bound} ms)"
((down_ms <= bound)) || fail "s2 reported down after ${down_ms} ms, over ${bound} ms"
during=$(lines)
sleep 2 # s2 stays cut while the others go on
poll "20 more rounds" saw "$during" "^reply s3 "
grep -q '^error s[13] ' "$C" && fail "s1 or s3 failed a request during the partition: $(grep -m1 '^error s[13] ' "$C")"

# ---- heal -------------------------------------------------------------------------------
healed=$(lines)
block -D
say "c-s2 link restored"
poll "s2 reported up" saw "$healed" '^event s2 up$'
up=$(grep -n '^event s2 up$' "$C" | tail -n 1 | cut -d: -f1)
poll "a reply from s2 after the heal" saw "$up" '^reply s2 '
say "s2 answers again"

# ---- stop and check -------------------------------------------------------------------------
# SIGTERM to node $1 (named $2 in messages): it must exit 0 within 20 s.
stop_gracefully() {
    local node=$1 name=$2 rc=0
    kill -TERM "${PID[$node]}"
    timeout 20 tail --pid="${PID[$node]}" -f /dev/null || fail "$name did not stop on SIGTERM"
    wait "${PID[$node]}" || rc=$?
    unset "PID[$node]"
    ((rc == 0)) || fail "$name exited with status $rc"
}
stop_gracefully c "the client"
for s in "${SERVERS[@]}"; do
    stop_gracefully "$s" "$s"
done

awk -v logs="$LOGS" '
    $1 == "reply" || $1 == "error" {
        key = $2 " " $3
        if (key in seen) { print "two outcomes for " key; bad = 1 }
        seen[key] = 1
        if ($3 > last[$2]) last[$2] = $3
        if ($1 == "reply" && $4 != $2 ":" $3) { print "wrong reply for " key ": " $4; bad = 1 }
        if ($1 == "reply") replied[key] = 1
        if ($1 == "error") {
            if ($2 != "s2") { print "error from " $2 ": " $0; bad = 1 }
            if ($4 !~ /^(timeout|silent|disconnected|connect)$/) { print "untyped error: " $0; bad = 1 }
            errors++
        }
    }
    END {
        # The last round may have been cut short by the stop.
        for (s in last) for (n = 0; n < last[s]; n++)
            if (!((s " " n) in seen)) { print "lost: " s " " n; bad = 1 }
        for (k in replied) {
            split(k, p, " ")
            cmd = "grep -qx \"got " p[2] "\" " logs "/" p[1] ".out"
            if (system(cmd) != 0) { print "replied but never received: " k; bad = 1 }
        }
        if (errors == 0) { print "no request to s2 failed during the partition"; bad = 1 }
        exit bad
    }' "$C" >"$LOGS/check.txt" || fail "$(head -n 5 "$LOGS/check.txt")"
for s in "${SERVERS[@]}"; do
    dup=$(sort "$LOGS/$s.out" | uniq -d | head -n 1)
    [[ -z "$dup" ]] || fail "$s received a request twice: $dup"
done
total=$(grep -c '^reply ' "$C")
errs=$(grep -c '^error ' "$C")
say "PASS: $total replies, $errs typed errors (all s2, during the cut), none lost or answered twice"
