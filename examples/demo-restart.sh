#!/usr/bin/env bash
# examples/demo-restart.sh — what `make demo-restart` runs: calls survive
# a "reboot" of the host's shared memory.
#
# sipd (2 workers) and shmreg-sync run; sipp sets up DEMO_CALLS calls and
# holds them (DEMO_HOLD_MS before each BYE). Then sipd, its workers and
# the daemon are SIGKILLed and the registry's segment is deleted, as a
# reboot would lose /dev/shm. `shmregctl restore --from` rebuilds the
# registry from the sync directory on disk, sipd starts again, and every
# BYE that sipp then sends is answered 200 (not 481: the dialogs came
# back with their sessions' IDs). The exit trap stops everything and
# removes the temporary directories.
#
# Why a script: the background processes and their cleanup need one
# shell that owns them from start to end (as examples/demo.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CALLS=${DEMO_CALLS:-50}
HOLD_MS=${DEMO_HOLD_MS:-10000}
B=build/release
SIPD=$B/examples/sipd
CTL=$B/tools/shmregctl
SYNC=$B/tools/shmreg-sync

if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

command -v sipp >/dev/null || { echo "demo-restart: sipp is missing (package sip-tester; make check-deps)" >&2; exit 1; }
say "build (library, sipd, shmregctl, shmreg-sync)"
make --no-print-directory -j2 "$SIPD" "$CTL" "$SYNC" >/dev/null

shm=$(mktemp -d /dev/shm/shmreg-demo.XXXXXX 2>/dev/null || mktemp -d /tmp/shmreg-demo.XXXXXX)
disk=$(mktemp -d /tmp/shmreg-sync-demo.XXXXXX)
reg=$shm/registry
sync=$disk/sync
port=$(( 20000 + RANDOM % 20000 ))
sipd_pid= sync_pid= sipp_pid=
cleanup() {
    trap - EXIT INT TERM
    for p in $sipp_pid $sync_pid $sipd_pid; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in $sipp_pid $sync_pid $sipd_pid; do kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$shm" "$disk"
    echo "demo-restart: stopped; temporary directories removed"
}
trap cleanup EXIT INT TERM

start_sipd() {
    setsid "$SIPD" -r "$reg" -l "127.0.0.1:$port" -w 2 -e 2 >>"$disk/sipd.log" 2>&1 &
    sipd_pid=$!
    for _ in $(seq 100); do "$CTL" -r "$reg" stat >/dev/null 2>&1 && break; sleep 0.1; done
    sleep 0.5
}
start_sync() {
    setsid "$SYNC" -r "$reg" --lmdb "$sync" --interval 50 >>"$disk/sync.log" 2>&1 &
    sync_pid=$!
}

say "sipd on 127.0.0.1:$port, shmreg-sync writing behind into $sync"
start_sipd
start_sync
say "sipp: $CALLS calls, each held ${HOLD_MS} ms before its BYE"
sipp "127.0.0.1:$port" -sf examples/sipd/uac_long.xml -i 127.0.0.1 -nostdin -m "$CALLS" -l "$CALLS" \
     -r 100 -d "$HOLD_MS" -recv_timeout 30000 -trace_screen -screen_file "$disk/sipp.screen" \
     >"$disk/sipp.out" 2>&1 &
sipp_pid=$!
for _ in $(seq 200); do
    n=$("$CTL" -r "$reg" --json stat | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessions"]["by_state"]["Active"])')
    [ "$n" -ge "$CALLS" ] && break
    sleep 0.05
done
# Durable: the daemon's durable position covers every event published so
# far (it moves once a second with the default --fsync interval).
upto=$("$CTL" -r "$reg" --json stat | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"]["published"])')
for _ in $(seq 300); do
    d=$("$CTL" -r "$reg" --json stat | python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"]["durable_seq"])')
    [ "$d" -ge "$upto" ] && break
    sleep 0.05
done
"$CTL" -r "$reg" sync status --lmdb "$sync"

say "the reboot: SIGKILL sipd, its workers and shmreg-sync; delete the segment"
kill -KILL -- "-$sipd_pid" "-$sync_pid"
wait "$sipd_pid" "$sync_pid" 2>/dev/null || true
sipd_pid= sync_pid=
rm -rf "$reg"
ls "$reg" 2>/dev/null || echo "$reg: gone"

say "restore from the sync directory (shmregctl restore --from)"
"$CTL" -r "$reg" restore --from "$sync"
start_sipd
start_sync
say "sipd is back; waiting for sipp's BYEs"
wait "$sipp_pid" && rc=0 || rc=$?
sipp_pid=
ok=$(awk -F'|' '/Successful call/ {v=$3} END {print v+0}' "$disk/sipp.screen")
failed=$(awk -F'|' '/Failed call/ {v=$3} END {print v+0}' "$disk/sipp.screen")
echo "sipp: exit $rc, $ok successful calls, $failed failed (a BYE answered 481 would fail its call)"
[ "$rc" = 0 ] && [ "$ok" = "$CALLS" ] && [ "$failed" = 0 ] && echo "demo-restart: every call survived the reboot"
