#!/usr/bin/env bash
# examples/demo-ha.sh — what `make demo-ha` runs: calls survive a dead host.
#
# Two "hosts" on this machine, each a registry with its own node ID and
# its own shmreg-sync mirroring through one redis-server: host A (node 1)
# runs sipd on the floating address 127.0.0.2, host B (node 2) mirrors.
# sipp sets up DEMO_CALLS calls through the floating address and holds
# them (DEMO_HOLD_MS before each BYE). Host A then dies whole: sipd, its
# workers and its daemon SIGKILLed, its segment deleted. B's daemon sees
# A's lease (1 s) run out and adopts A's calls in one atomic step in
# Redis; B starts sipd on the floating address, as a host taking over a
# virtual IP would, and every BYE that sipp then sends is answered 200.
# The exit trap stops everything and removes the temporary directories.
#
# Why a script: the background processes and their cleanup need one
# shell that owns them from start to end (as examples/demo.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CALLS=${DEMO_CALLS:-50}
HOLD_MS=${DEMO_HOLD_MS:-10000}
FLOAT=127.0.0.2
B=build/release
SIPD=$B/examples/sipd
CTL=$B/tools/shmregctl
SYNC=$B/tools/shmreg-sync

if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
for t in sipp redis-server; do
    command -v $t >/dev/null || { echo "demo-ha: $t is missing (make check-deps)" >&2; exit 1; }
done
say "build (library, sipd, shmregctl, shmreg-sync)"
make --no-print-directory -j2 "$SIPD" "$CTL" "$SYNC" >/dev/null

shm=$(mktemp -d /dev/shm/shmreg-demo.XXXXXX 2>/dev/null || mktemp -d /tmp/shmreg-demo.XXXXXX)
work=$(mktemp -d /tmp/shmreg-ha-demo.XXXXXX)
rega=$shm/hostA regb=$shm/hostB
port=$(( 20000 + RANDOM % 20000 ))
rport=$(( 40000 + RANDOM % 20000 ))
pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$shm" "$work"
    echo "demo-ha: stopped; temporary directories removed"
}
trap cleanup EXIT INT TERM
json() { "$CTL" -r "$1" --json stat | python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"; }
start() { local log=$1; shift; setsid "$@" >>"$work/$log" 2>&1 & pids+=($!); echo $!; }

say "redis-server on 127.0.0.1:$rport; hosts A (node 1) and B (node 2), each mirrored by shmreg-sync"
start redis.log redis-server --port "$rport" --save '' --appendonly no --dir "$work" >/dev/null
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$CTL" -r "$rega" create --sessions 4096 --node 1 >/dev/null
"$CTL" -r "$regb" create --sessions 4096 --node 2 >/dev/null
ma=$(start syncA.log "$SYNC" -r "$rega" --redis "redis://127.0.0.1:$rport" --interval 20 --lease-ms 1000)
mb=$(start syncB.log "$SYNC" -r "$regb" --redis "redis://127.0.0.1:$rport" --interval 20 --lease-ms 1000)
sa=$(start sipdA.log "$SIPD" -r "$rega" -l "$FLOAT:$port" -w 2 -e 2)
sleep 1

say "sipp: $CALLS calls through the floating address $FLOAT:$port, each held ${HOLD_MS} ms"
sipp "$FLOAT:$port" -sf examples/sipd/uac_long.xml -i 127.0.0.1 -nostdin -m "$CALLS" -l "$CALLS" \
     -r 100 -d "$HOLD_MS" -recv_timeout 30000 -trace_screen -screen_file "$work/sipp.screen" \
     >"$work/sipp.out" 2>&1 &
sipp_pid=$!
for _ in $(seq 300); do
    [ "$(json "$regb" 'd["node"]["foreign_sessions"]')" -ge "$CALLS" ] && break
    sleep 0.05
done
echo "host A: $(json "$rega" 'd["sessions"]["by_state"]["Active"]') Active calls;" \
     "host B: $(json "$regb" 'd["node"]["foreign_sessions"]') copies of them"
"$CTL" -r "$regb" stat | sed -n '/^node:/,/^config:/p' | head -30

say "host A dies: SIGKILL sipd, its workers and shmreg-sync; delete its segment"
t0=$(date +%s%N)
kill -KILL -- "-$sa" "-$ma"
rm -rf "$rega"
for _ in $(seq 400); do
    [ "$(json "$regb" 'd["node"]["foreign_sessions"]')" = 0 ] && break
    sleep 0.025
done
t1=$(date +%s%N)
echo "host B adopted A's calls $(( (t1 - t0) / 1000000 )) ms after A died (lease 1000 ms)"
"$CTL" -r "$regb" list --state Active --limit 3

say "host B takes the floating address: sipd on $FLOAT:$port"
start sipdB.log "$SIPD" -r "$regb" -l "$FLOAT:$port" -w 2 -e 2 >/dev/null
say "waiting for sipp's BYEs"
wait "$sipp_pid" && rc=0 || rc=$?
ok=$(awk -F'|' '/Successful call/ {v=$3} END {print v+0}' "$work/sipp.screen")
failed=$(awk -F'|' '/Failed call/ {v=$3} END {print v+0}' "$work/sipp.screen")
echo "sipp: exit $rc, $ok successful calls, $failed failed (a BYE answered 481 would fail its call)"
[ "$rc" = 0 ] && [ "$ok" = "$CALLS" ] && [ "$failed" = 0 ] && echo "demo-ha: every call survived its host"
