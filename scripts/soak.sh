#!/bin/bash
# usage: scripts/soak.sh <dir with release gateway + loadtest, e.g. target/release> <duration, e.g. 30m> [loadtest mixed args...]
# A gateway on the embedded engine under `loadtest mixed` (pairs chatting, typing, read
# receipts, periodic reconnects that resume); samples the gateway's RSS and open fds every 30 s.
set -e
BIN=$1; DUR=$2; shift 2
SECRET=soak-secret-0123456789abcdef0123456789
DIR=$(mktemp -d)
PORT=19$((RANDOM % 900 + 100))
$BIN/gateway --port $PORT --bind 127.0.0.1 --data-dir $DIR/data --jwt-secret $SECRET --log warn \
  --user-messages-per-sec 1000 --user-message-burst 1000 --session-frames-per-sec 1000 --session-frame-burst 1000 \
  > $DIR/gw.out 2>&1 &
GW=$!
for i in $(seq 1 100); do grep -q "listening on" $DIR/gw.out && break; sleep 0.1; done
( while kill -0 $GW 2>/dev/null; do
    echo "$(date +%s) rss_kb=$(awk '/VmRSS/{print $2}' /proc/$GW/status) fds=$(ls /proc/$GW/fd | wc -l)"
    sleep 30
  done ) > $DIR/samples.txt &
SAMPLER=$!
$BIN/loadtest mixed --secret $SECRET --target 127.0.0.1:$PORT --duration $DUR --json $DIR/run.json "$@" > $DIR/lt.out 2>&1 || true
sleep 5
echo "after the run: rss_kb=$(awk '/VmRSS/{print $2}' /proc/$GW/status) fds=$(ls /proc/$GW/fd | wc -l)" >> $DIR/samples.txt
kill $GW; wait $GW 2>/dev/null || true
kill $SAMPLER 2>/dev/null || true
cat $DIR/samples.txt
tail -25 $DIR/lt.out
echo "loadtest result: $DIR/run.json"
echo "dir $DIR"
