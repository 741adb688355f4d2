#!/usr/bin/env bash
# A Peer mesh across separate network stacks, with real failures.
#
# Three network namespaces (a, b, c), a veth link between each pair, each link
# its own /24 (10.77.12.0/24 joins a=.1 and b=.2, 10.77.13.0/24 a and c,
# 10.77.23.0/24 b and c). One `p2p` example runs in each, listening on port
# 7000 and naming the other two by their address on the shared link; stdin
# comes from a FIFO this script writes commands to, stdout goes to a log.
#
#   1. start the peers in a shuffled order with pauses, so some dial peers
#      that are not up yet; wait until every log shows `up` for the others;
#   2. every peer broadcasts a numbered batch; each message must be logged
#      exactly once by each other peer;
#   3. SIGKILL one peer, restart it, wait for `down` then `up` on the others
#      and `up` on it; a new batch, exactly once;
#   4. DROP one link with iptables (both directions, in one namespace) for
#      longer than the idle timeout; wait for `down` at both ends while the
#      other links stay up; restore; wait for `up`; a new batch, exactly once;
#   5. `quit` each peer, which must exit 0.
#
# Usage (as root; ./scripts/test runs it, and CI runs that):  tests/hosts/mesh.sh
#   ENCHUFE_SKIP_NETNS=1   skip, saying so loudly (exit 0); without it, a
#                          machine that cannot create namespaces fails
#   ENCHUFE_MESH_BIN=PATH  run this binary instead of building examples/p2p.rs
#   ENCHUFE_MESH_KEEP=1    keep the logs directory even when the run passes
# Installs iptables with apt-get when it is missing.
# The checks, namespaces, links, iptables and clean-up are tests/hosts/lib.sh,
# shared with tests/hosts/partition.sh.
# Exit status: 0 passed (or explicitly skipped), 1 the mesh misbehaved,
# 2 the machine cannot run the test (not root, no namespaces, no iptables).
set -euo pipefail
cd "$(dirname "$0")/../.."

NODES=(a b c)
PORT=7000
BATCH=20        # messages each peer broadcasts per batch
KEEPALIVE_MS=200
IDLE_MS=1000    # a cut link must be reported down within a few of these
WAIT=20         # seconds any single wait may take before the run fails
RUN="ench$$"    # namespace prefix: unique per run, so leftovers of a crashed run cannot collide
# shellcheck source=tests/hosts/lib.sh
source tests/hosts/lib.sh
declare -A FD INC

say() { printf '[mesh %3ss] %s\n' "$SECONDS" "$*"; }

# The log of node $1's current incarnation, and all of its incarnations.
out() { printf '%s/%s.%s.out' "$LOGS" "$1" "${INC[$1]}"; }
all_out() { cat "$LOGS/$1".*.out; }

fail() {
    echo >&2
    echo "FAIL: $*" >&2
    for n in "${NODES[@]}"; do
        [[ -n "${INC[$n]:-}" ]] || continue
        echo "--- $n: last lines of stdout ($(out "$n"))" >&2
        tail -n 12 "$(out "$n")" >&2 || true
        echo "--- $n: last lines of stderr" >&2
        tail -n 8 "$LOGS/$n.${INC[$n]}.err" >&2 || true
    done
    echo "FAIL: $*" >&2
    exit 1
}

hosts_begin "the multi-host Peer mesh"

# ---- the namespaces and links ------------------------------------------------
num() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; esac; }
# The address of node $1 on its link to node $2: 10.77.<lower><higher>.<node>.
addr() {
    local x y
    x=$(num "$1") y=$(num "$2")
    if ((x < y)); then echo "10.77.$x$y.$x"; else echo "10.77.$y$x.$x"; fi
}

namespaces "${NODES[@]}"
for pair in ab ac bc; do
    x=${pair:0:1} y=${pair:1:1}
    veth "$x" "to-$y" "$(addr "$x" "$y")" "$y" "to-$x" "$(addr "$y" "$x")"
done
say "namespaces $RUN-{a,b,c}, veth links 10.77.12.0/24 (a-b), 10.77.13.0/24 (a-c), 10.77.23.0/24 (b-c)"

# ---- iptables: installed if missing, and a backend that works in a namespace --
pick_iptables a

# ---- the peers -------------------------------------------------------------------
example_bin p2p "${ENCHUFE_MESH_BIN:-}"

for n in "${NODES[@]}"; do
    mkfifo "$LOGS/$n.in"
    # Read-write: opening never blocks, and the FIFO outlives a killed reader.
    exec {fd}<>"$LOGS/$n.in"
    FD[$n]=$fd
done

start() {
    local x=$1 y args=()
    INC[$x]=$((${INC[$x]:-0} + 1))
    for y in "${NODES[@]}"; do
        [[ $y == "$x" ]] || args+=(--peer "$(addr "$y" "$x"):$PORT")
    done
    : >"$(out "$x")" # exists before the first poll reads it
    # `ip netns exec` execs the binary, so $! is the peer itself.
    ip netns exec "$(ns "$x")" "$BIN" --id "$x" --addr "0.0.0.0:$PORT" "${args[@]}" \
        --keepalive-ms "$KEEPALIVE_MS" --idle-ms "$IDLE_MS" \
        <"$LOGS/$x.in" >"$(out "$x")" 2>"$LOGS/$x.${INC[$x]}.err" &
    PID[$x]=$!
}
tell() { printf '%s\n' "$2" >&"${FD[$1]}"; }

# poll COMMAND...: runs COMMAND every 0.1s until it succeeds (status 0) or
# $WAIT seconds pass (status 1). Fails at once if a peer died.
poll() {
    local end=$((SECONDS + WAIT))
    until "$@"; do
        alive
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}
wait_until() {
    local what=$1
    shift
    poll "$@" || fail "no $what within ${WAIT}s"
}

# Lines of node $1's current log after line $2, and how many lines it has.
since() { tail -n "+$(($2 + 1))" "$(out "$1")"; }
mark() { wc -l <"$(out "$1")"; }
# saw NODE MARK LINE: NODE's current log has exactly LINE after line MARK.
# (awk, not `grep -q` on a pipe, which can fail under pipefail by SIGPIPE.)
saw() { awk -v m="$2" -v l="$3" 'NR > m && $0 == l { f = 1 } END { exit !f }' "$(out "$1")"; }
# Node $1's latest word on node $2 is `up`.
linked() { awk -v y="$2" '$0 == "up " y { s = 1 } $0 == "down " y { s = 0 } END { exit !s }' "$(out "$1")"; }
mesh_up() {
    local x y
    for x in "${NODES[@]}"; do
        for y in "${NODES[@]}"; do
            [[ $x == "$y" ]] || linked "$x" "$y" || return 1
        done
    done
}

# wait_mesh WHAT: waits for mesh_up; on failure, each peer's `peers` answer
# goes in the message, to tell a link that is missing from an event that is.
wait_mesh() {
    poll mesh_up && return
    local x m diag=
    for x in "${NODES[@]}"; do
        m=$(mark "$x")
        tell "$x" peers
        WAIT=3 poll answered "$x" "$m" || true
        diag+="$x: $(since "$x" "$m" | grep -m 1 "^peers " || echo "no answer to 'peers'"); "
    done
    fail "no $1 within ${WAIT}s (now $diag)"
}
answered() { awk -v m="$2" 'NR > m && /^peers / { f = 1 } END { exit !f }' "$(out "$1")"; }
# Cross-check the events with `peers`: each node lists exactly the other two.
check_peers() {
    local x y m want got
    for x in "${NODES[@]}"; do
        want=$(for y in "${NODES[@]}"; do [[ $y == "$x" ]] || echo "$y"; done | paste -sd,)
        m=$(mark "$x")
        tell "$x" peers
        wait_until "'peers' answer from $x" answered "$x" "$m"
        got=$(since "$x" "$m" | grep -m 1 "^peers " | cut -d' ' -f2 | tr , '\n' | sort | paste -sd,)
        [[ "$got" == "$want" ]] || fail "$x: 'peers' says '$got', expected '$want'"
    done
}

# batch TAG: every node broadcasts $BATCH messages `m-TAG-NODE-I`; every other
# node must log `recv NODE m-TAG-NODE-I` exactly once, and each broadcast must
# report it reached both peers (`sent 2`).
batch() {
    local tag=$1 x i t0=$SECONDS
    declare -A m
    for x in "${NODES[@]}"; do m[$x]=$(mark "$x"); done
    for x in "${NODES[@]}"; do
        for ((i = 1; i <= BATCH; i++)); do tell "$x" "broadcast m-$tag-$x-$i"; done
    done
    delivered() {
        local x
        for x in "${NODES[@]}"; do
            [[ $(since "$x" "${m[$x]}" | grep -c "^sent ") -eq $BATCH ]] || return 1
            [[ $(counts "$tag" "$x" | cut -d' ' -f1) -eq $((BATCH * (${#NODES[@]} - 1))) ]] || return 1
        done
    }
    poll delivered || fail "batch $tag incomplete after ${WAIT}s: $(for x in "${NODES[@]}"; do
        echo -n "$x received $(counts "$tag" "$x" | cut -d' ' -f1)/$((BATCH * (${#NODES[@]} - 1))) and logged $(since "$x" "${m[$x]}" | grep -c "^sent ")/$BATCH 'sent'; "
    done)"
    sleep 0.5 # room for a duplicate to show up
    local d dup bad sent
    for x in "${NODES[@]}"; do
        read -r d dup bad <<<"$(counts "$tag" "$x")"
        ((dup == 0)) || fail "batch $tag: $x received $dup duplicate(s), e.g. $(all_out "$x" |
            grep "^recv [a-z] m-$tag-" | sort | uniq -d | head -n 3 | paste -sd'|')"
        ((bad == 0)) || fail "batch $tag: $x logged $bad message(s) with the wrong sender"
        sent=$(since "$x" "${m[$x]}" | grep "^sent " | grep -vcx "sent $((${#NODES[@]} - 1))" || true)
        ((sent == 0)) || fail "batch $tag: $sent of $x's broadcasts did not reach every peer"
    done
    say "batch $tag: ${#NODES[@]} peers x $BATCH broadcasts, each received exactly once by the $((${#NODES[@]} - 1)) others ($((${#NODES[@]} * (${#NODES[@]} - 1) * BATCH)) deliveries, $((SECONDS - t0))s)"
}
# counts TAG NODE: "<distinct messages> <duplicates> <wrong sender>" of batch
# TAG in every log NODE ever wrote (a restarted node has several).
counts() {
    all_out "$2" | awk -v tag="$1" -v me="$2" '
        $1 == "recv" { split($3, p, "-")
                       if (p[1] != "m" || p[2] != tag) next
                       n[$3]++; if (p[3] != $2 || p[3] == me) bad++ }
        END { for (k in n) { d++; if (n[k] > 1) dup += n[k] - 1 }
              print d + 0, dup + 0, bad + 0 }'
}

# 1. Shuffled start.
read -r -a order <<<"$(shuf -e "${NODES[@]}" | paste -sd' ')"
say "starting peers in the order ${order[*]}, 0.7s apart"
for x in "${order[@]}"; do
    start "$x"
    sleep 0.7
done
wait_mesh "full mesh after start (every log shows 'up' for the two others)"
check_peers
say "mesh formed"
batch 1

# 2. SIGKILL one peer and restart it.
victim=$(shuf -n 1 -e "${NODES[@]}")
declare -A before
for x in "${NODES[@]}"; do before[$x]=$(mark "$x"); done
say "SIGKILL $victim (pid ${PID[$victim]})"
kill -9 "${PID[$victim]}"
wait "${PID[$victim]}" 2>/dev/null || true
unset 'PID[$victim]'
saw_down() {
    local x
    for x in "${NODES[@]}"; do
        [[ $x == "$victim" ]] || saw "$x" "${before[$x]}" "down $victim" || return 1
    done
}
wait_until "'down $victim' on the others after the kill" saw_down
start "$victim"
say "restarted $victim"
wait_mesh "mesh re-formed after restarting $victim"
check_peers
say "mesh re-formed"
batch 2

# 3. Cut one link with iptables, longer than the idle timeout.
read -r x y <<<"$(shuf -n 2 -e "${NODES[@]}" | paste -sd' ')"
for z in "${NODES[@]}"; do [[ $z == "$x" || $z == "$y" ]] || break; done
for n in "${NODES[@]}"; do before[$n]=$(mark "$n"); done
drop=(-i "to-$y" -j DROP) drop_out=(-o "to-$y" -j DROP)
say "cutting link $x-$y (iptables DROP in $x's namespace, both directions)"
t_cut=$SECONDS
ip netns exec "$(ns "$x")" "$IPT" -w -I INPUT "${drop[@]}"
ip netns exec "$(ns "$x")" "$IPT" -w -I OUTPUT "${drop_out[@]}"
cut_seen() { saw "$x" "${before[$x]}" "down $y" && saw "$y" "${before[$y]}" "down $x"; }
wait_until "'down' at both ends of the cut link $x-$y" cut_seen
say "both ends report the link down after $((SECONDS - t_cut))s"
# Hold the cut for at least twice the idle timeout, then check no other link fell.
sleep "$(awk -v ms="$IDLE_MS" 'BEGIN { print 2 * ms / 1000 }')"
for pair in "$z $x" "$z $y" "$x $z" "$y $z"; do
    read -r n o <<<"$pair"
    ! saw "$n" "${before[$n]}" "down $o" || fail "cutting $x-$y also took down $n-$o"
done
ip netns exec "$(ns "$x")" "$IPT" -w -D INPUT "${drop[@]}"
ip netns exec "$(ns "$x")" "$IPT" -w -D OUTPUT "${drop_out[@]}"
t_restore=$SECONDS
say "link $x-$y restored after $((t_restore - t_cut))s"
wait_mesh "mesh re-formed after restoring $x-$y"
say "mesh re-formed $((SECONDS - t_restore))s after the restore"
check_peers
batch 3

# 4. Quit: every peer must exit by itself, status 0.
for n in "${NODES[@]}"; do tell "$n" quit; done
for n in "${NODES[@]}"; do
    end=$((SECONDS + 10))
    while kill -0 "${PID[$n]}" 2>/dev/null; do
        ((SECONDS < end)) || fail "$n did not exit within 10s of 'quit'"
        sleep 0.1
    done
    rc=0
    wait "${PID[$n]}" || rc=$?
    unset 'PID[$n]'
    ((rc == 0)) || fail "$n exited with status $rc after 'quit'"
done
errors=$(cat "$LOGS"/*.out | grep -c "^error " || true)
((errors == 0)) || fail "$errors 'error' line(s) in the peers' output: $(cd "$LOGS" &&
    grep -H "^error " ./*.out | sed 's|^\./\([a-z]\)\.\([0-9]*\)\.out:|\1 (run \2): |' | head -n 3 | paste -sd';')"
say "PASS: start in order ${order[*]}, SIGKILL+restart of $victim, iptables cut of $x-$y; 3 batches delivered exactly once; total ${SECONDS}s"
