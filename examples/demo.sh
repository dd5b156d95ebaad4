#!/usr/bin/env bash
# examples/demo.sh — what `make demo` runs: shmreg where it is meant to live.
#
# One command, on a fresh Debian machine as root: install what is missing
# (the DEPS of the Makefile, sip-tester among them), build, create a
# registry in a temporary directory, start the prefork SIP server sipd with
# 4 workers, drive calls into it with sipp for about ten seconds while
# shmregctl shows the registry live, then the final figures, and stop
# everything. Whatever happens (an error, Ctrl-C), the exit trap stops what
# was started and removes the temporary directory, and the last lines say
# whether anything was left behind.
#
# Why a script and not make recipes: the background processes and their
# cleanup need one shell that owns them from start to end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATE=${DEMO_RATE:-50}          # calls per second
SECONDS_OF_CALLS=${DEMO_SECONDS:-10}
CALL_MS=${DEMO_CALL_MS:-2000}  # how long each call stays up
B=build/release
SIPD=$B/examples/sipd
CTL=$B/tools/shmregctl

if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

say "dependencies (make check-deps)"
make --no-print-directory check-deps && echo "all present"
command -v sipp >/dev/null || { echo "demo: sipp is missing (package sip-tester)" >&2; exit 1; }

say "build (library, sipd, shmregctl)"
make --no-print-directory -j"$(nproc)" "$SIPD" "$CTL" >/dev/null

tmp=$(mktemp -d /dev/shm/shmreg-demo.XXXXXX 2>/dev/null || mktemp -d /tmp/shmreg-demo.XXXXXX)
reg=$tmp/registry
sipd_pid= sipp_pid= workers=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$sipp_pid" ] && kill "$sipp_pid" 2>/dev/null && wait "$sipp_pid" 2>/dev/null || true
    if [ -n "$sipd_pid" ] && kill -0 "$sipd_pid" 2>/dev/null; then
        kill -TERM "$sipd_pid"
        for _ in $(seq 100); do kill -0 "$sipd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$sipd_pid" 2>/dev/null || true
        wait "$sipd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    left=
    for p in $sipd_pid $workers $sipp_pid; do
        kill -0 "$p" 2>/dev/null && left="$left $p"
    done
    [ -e "$tmp" ] && left="$left $tmp"
    if [ -z "$left" ]; then
        echo "demo: stopped; no process and no registry file left behind"
    else
        echo "demo: LEFT BEHIND:$left" >&2
        rc=1
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "sipd: registry $reg, 4 workers, a free port on 127.0.0.1"
# Port 0: sipd takes a free port and says which. Ring 300 ms, so that the
# list shows calls ringing as well as answered; finished calls linger 1 s.
# The log exists before sipd starts: a backgrounded command opens its
# redirection only once forked, and the loop below may read it first.
: >"$tmp/sipd.log"
"$SIPD" -r "$reg" -l 127.0.0.1:0 -w 4 -R 300 -L 1000 -e 2 2>>"$tmp/sipd.log" &
sipd_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/sipd.log")
    [ -n "$port" ] && break
    kill -0 "$sipd_pid" 2>/dev/null || { cat "$tmp/sipd.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "demo: sipd did not start" >&2; cat "$tmp/sipd.log" >&2; exit 1; }
sleep 0.5
cat "$tmp/sipd.log"
workers=$("$CTL" -r "$reg" handles | awk -v m="$sipd_pid" 'NR > 1 && $2 != m && $3 == "yes" && $NF == "no" { print $2 }' | tr '\n' ' ')
echo "master pid $sipd_pid, worker pids $workers"

calls=$((RATE * SECONDS_OF_CALLS))
say "sipp: $calls calls, $RATE calls/s, each up ${CALL_MS} ms (sipp -sn uac 127.0.0.1:$port)"
sipp -sn uac "127.0.0.1:$port" -i 127.0.0.1 -r "$RATE" -d "$CALL_MS" -m "$calls" \
    -nostdin -recv_timeout 10000 -trace_screen -screen_file "$tmp/sipp.screen" \
    >/dev/null 2>"$tmp/sipp.err" &
sipp_pid=$!

t=0
while kill -0 "$sipp_pid" 2>/dev/null; do
    sleep 2
    t=$((t + 2))
    kill -0 "$sipp_pid" 2>/dev/null || break
    say "t=${t}s  shmregctl stat (sessions, heap, events) and list --limit 5"
    "$CTL" -r "$reg" stat | sed -n '/^sessions:/,/^index:/p;/^events:/,/^config:/p' |
        grep -vE '^(index|config):|: +0$' || true
    "$CTL" -r "$reg" list --limit 5 --reverse || true
    # the master's call-state log, as it goes
    tail -n 3 "$tmp/sipd.log"
done
sipp_rc=0
wait "$sipp_pid" || sipp_rc=$?
sipp_pid=

say "sipp's result (exit $sipp_rc)"
grep -E 'Successful call|Failed call' "$tmp/sipp.screen" | tail -n 2 || true

say "after the linger time: final shmregctl stat, check"
sleep 1.5
"$CTL" -r "$reg" stat
"$CTL" -r "$reg" check | grep -E 'problem_count|sessions|dialogs|leaked_blocks' || true

say "SIGTERM to sipd"
kill -TERM "$sipd_pid"
sipd_rc=0
wait "$sipd_pid" || sipd_rc=$?
echo "sipd exited with $sipd_rc; its last words:"
grep -E 'stopping|worker [0-9]+:|stats:|stopped' "$tmp/sipd.log" || true
[ "$sipd_rc" = 0 ] && [ "$sipp_rc" = 0 ] || exit 1
