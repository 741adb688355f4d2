# Set-up and tear-down shared by tests/hosts/mesh.sh and tests/hosts/partition.sh,
# sourced by both (not run by itself): the skip and root checks, a logs
# directory, network namespaces joined by veth links, an iptables backend that
# works inside a namespace, the binary under test, and a clean-up trap that
# kills what the run started and deletes the run's namespaces.
#
# The sourcing script has run `set -euo pipefail` and `cd` to the repository
# root, sets RUN (its namespace prefix, unique per run) and defines say() and
# fail(); it records every process it starts in PID (name -> pid), which the
# clean-up kills.

declare -A PID
NETNS=()

# Cannot run here: exit 2 with the reason, unless skipping was asked for.
unable() {
    echo "FAIL: tests/hosts/$(basename "$0") cannot run: $*" >&2
    echo "      (set ENCHUFE_SKIP_NETNS=1 to skip this test explicitly)" >&2
    exit 2
}

# hosts_begin UNTESTED: exits 0 saying UNTESTED was not tested when
# ENCHUFE_SKIP_NETNS=1; exits 2 without root or iproute2; otherwise makes the
# logs directory LOGS and sets the clean-up trap.
hosts_begin() {
    if [[ "${ENCHUFE_SKIP_NETNS:-}" == 1 ]]; then
        echo "*** SKIPPED tests/hosts/$(basename "$0"): ENCHUFE_SKIP_NETNS=1; $1 was NOT tested ***"
        exit 0
    fi
    [[ $EUID -eq 0 ]] || unable "network namespaces need root (CI runs as root; locally: sudo $0)"
    command -v ip >/dev/null || unable "ip (iproute2) is not installed"
    LOGS=$(mktemp -d -t "enchufe-$(basename "$0" .sh).XXXXXX")
    trap hosts_cleanup EXIT
    trap 'exit 130' INT TERM HUP
}

# The EXIT trap: keeps the logs when the run failed or ENCHUFE_MESH_KEEP=1.
hosts_cleanup() {
    local rc=$? n ns
    for n in "${!PID[@]}"; do
        kill -9 "${PID[$n]}" 2>/dev/null || true
        wait "${PID[$n]}" 2>/dev/null || true # reaped quietly: no "Killed" noise
    done
    for ns in "${NETNS[@]}"; do
        # Anything still inside a namespace of this run was started by it.
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ $rc -eq 0 && "${ENCHUFE_MESH_KEEP:-}" != 1 ]]; then
        rm -rf "$LOGS"
    else
        echo "logs kept in $LOGS" >&2
    fi
}

# Fails if a process in PID has exited (the run's polls call it each round).
alive() {
    local n rc
    for n in "${!PID[@]}"; do
        kill -0 "${PID[$n]}" 2>/dev/null && continue
        rc=0
        wait "${PID[$n]}" || rc=$?
        fail "$n (pid ${PID[$n]}) died, exit status $rc"
    done
}

# The namespace of node $1.
ns() { printf '%s-%s' "$RUN" "$1"; }

# namespaces NODE...: one namespace per node, loopback up.
namespaces() {
    local n
    for n in "$@"; do
        ip netns add "$(ns "$n")" 2>"$LOGS/netns.err" ||
            unable "ip netns add failed: $(cat "$LOGS/netns.err")"
        NETNS+=("$(ns "$n")")
        ip -n "$(ns "$n")" link set lo up
    done
}

# veth X IF_X ADDR_X Y IF_Y ADDR_Y: a veth link between nodes X and Y, named
# IF_X in X's namespace with ADDR_X/24 and IF_Y in Y's with ADDR_Y/24, both up.
veth() {
    ip link add "$2" netns "$(ns "$1")" type veth peer name "$5" netns "$(ns "$4")" ||
        unable "cannot create a veth link"
    ip -n "$(ns "$1")" addr add "$3/24" dev "$2"
    ip -n "$(ns "$4")" addr add "$6/24" dev "$5"
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$4")" link set "$5" up
}

# pick_iptables NODE: sets IPT to the first iptables backend that can add and
# delete a rule in NODE's namespace, installing iptables with apt-get if missing.
pick_iptables() {
    if ! command -v iptables >/dev/null && ! command -v iptables-legacy >/dev/null; then
        command -v apt-get >/dev/null || unable "iptables is missing and there is no apt-get to install it"
        say "installing iptables with apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; } \
            >"$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; unable "apt-get install iptables failed"; }
    fi
    local cand probe=(OUTPUT -o lo -p tcp --dport 9 -j DROP)
    IPT=
    for cand in iptables iptables-nft iptables-legacy; do
        command -v "$cand" >/dev/null || continue
        if ip netns exec "$(ns "$1")" "$cand" -w -A "${probe[@]}" 2>>"$LOGS/iptables.err"; then
            ip netns exec "$(ns "$1")" "$cand" -w -D "${probe[@]}"
            IPT=$cand
            break
        fi
    done
    [[ -n "$IPT" ]] || unable "no iptables backend works in a namespace: $(cat "$LOGS/iptables.err")"
    say "iptables backend: $IPT ($("$IPT" --version))"
}

# example_bin NAME PATH: sets BIN to PATH when it is not empty (a binary given
# by the caller), else builds the example NAME and sets BIN to it.
example_bin() {
    if [[ -n "$2" ]]; then
        BIN=$2
    else
        say "building the $1 example"
        BIN=$(cargo build --locked --workspace --all-features --example "$1" --message-format=json-render-diagnostics |
            sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) ||
            fail "cargo build --example $1 failed"
    fi
    [[ -x "$BIN" ]] || unable "no $1 binary (got '$BIN')"
}
