#!/bin/bash
# usage: scripts/soak.sh <dir with the gateway and loadtest binaries, e.g. target/release> <duration, e.g. 30m> [loadtest mixed args...]
#
# A gateway on the embedded engine under `loadtest mixed` (pairs chatting, typing, read
# receipts, periodic reconnects that resume); samples the gateway's RSS and open fds every
# $SOAK_SAMPLE_SECS (30) s. Fails when loadtest fails (pass `--slo 'loss=0,...'` to make
# loss, duplicates or gaps fail it) or when the gateway's open sockets do not come back to
# within 8 of what it had before the clients once they are gone (a connection leak).
# $SOAK_GATEWAY_ARGS: more gateway flags (e.g. --storage-memtable-mib 4).
set -euo pipefail
BIN=$1; DUR=$2; shift 2
SECRET=soak-secret-0123456789abcdef0123456789
DIR=$(mktemp -d)
PORT=19$((RANDOM % 900 + 100))
$BIN/gateway --port $PORT --bind 127.0.0.1 --data-dir $DIR/data --jwt-secret $SECRET --log warn \
  --user-messages-per-sec 1000 --user-message-burst 1000 --session-frames-per-sec 1000 --session-frame-burst 1000 \
  ${SOAK_GATEWAY_ARGS:-} > $DIR/gw.out 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q "listening on" $DIR/gw.out && break; sleep 0.1; done
grep -q "listening on" $DIR/gw.out || { cat $DIR/gw.out; echo "soak: the gateway did not start" >&2; exit 1; }
# Sockets only: the storage engine opens more files as its data grows (segments), which is no
# leak; a socket still open after every client left is.
fds() { ls -l /proc/$GW/fd | grep -c 'socket:' || true; }
files() { ls /proc/$GW/fd | wc -l; }
rss() { awk '/VmRSS/{print $2}' /proc/$GW/status; }
before=$(fds)
echo "before the run: rss_kb=$(rss) sockets=$before files=$(files)" > $DIR/samples.txt
( while kill -0 $GW 2>/dev/null; do
    echo "$(date +%s) rss_kb=$(rss) sockets=$(fds) files=$(files)"
    sleep ${SOAK_SAMPLE_SECS:-30}
  done ) >> $DIR/samples.txt 2>/dev/null &
SAMPLER=$!
status=0
$BIN/loadtest mixed --secret $SECRET --target 127.0.0.1:$PORT --duration $DUR --json $DIR/run.json "$@" > $DIR/lt.out 2>&1 || status=$?
# The clients are gone: their connections close within moments.
after=$(fds)
for _ in $(seq 1 100); do
  after=$(fds)
  [ "$after" -le $((before + 8)) ] && break
  sleep 0.1
done
echo "after the run: rss_kb=$(rss) sockets=$after files=$(files)" >> $DIR/samples.txt
kill $SAMPLER 2>/dev/null || true
kill $GW; wait $GW 2>/dev/null || true
trap - EXIT
cat $DIR/samples.txt
tail -25 $DIR/lt.out
echo "loadtest result: $DIR/run.json"
echo "dir $DIR"
if [ $status -ne 0 ]; then
  echo "soak: loadtest failed (status $status)" >&2
  exit 1
fi
if [ "$after" -gt $((before + 8)) ]; then
  echo "soak: the gateway holds $after open sockets after the run, $before before it" >&2
  exit 1
fi
