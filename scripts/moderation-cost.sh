#!/usr/bin/env bash
# Send-path cost of moderation (scripts/moderation-cost.sh target/release; env ORDER, PAIRS,
# RATE, DUR, OUT), one run, three configurations in turn on one fresh embedded
# gateway each: no rules; a marketplace-sized rule set (5 000 terms, 30 regexes, link and
# contact rules); the same plus a classifier rule against the real alt-profanity-check service.
# Same load each time (loadtest direct); server CPU per message from /proc/<pid>/stat.
set -euo pipefail
bin=${1:-target/release}
pairs=${PAIRS:-125}
rate=${RATE:-2}
dur=${DUR:-30s}
secret=measure-secret-0123456789abcdef0123
out=${OUT:-/tmp/measure-moderation}
mkdir -p "$out"
python3 "$(dirname "$0")/moderation-rules.py" > "$out/rules.json"
python3 "$(dirname "$0")/moderation-rules.py" --classifier > "$out/rules-cls.json"
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  "$bin/gateway" --port 0 --data-dir "$dir" --jwt-secret "$secret" --shards 2 \
    --user-messages-per-sec 1000 --session-frames-per-sec 5000 "$@" \
    > "$out/$name.gw.log" 2>&1 &
  local pid=$!
  local addr=""
  for _ in $(seq 100); do
    addr=$(grep -m1 -oE 'listening on [0-9.]+:[0-9]+' "$out/$name.gw.log" | awk '{print $3}' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "gateway did not start"; cat "$out/$name.gw.log"; exit 1; }
  local before; before=$(cpu_ticks $pid)
  "$bin/loadtest" direct --target "$addr" --secret "$secret" --pairs "$pairs" --rate "$rate" \
    --duration "$dur" --drain 5s --json "$out/$name.run.json" --quiet > "$out/$name.txt" 2>&1 || true
  local after; after=$(cpu_ticks $pid)
  local sent; sent=$(python3 -c "import json;d=json.load(open('$out/$name.run.json'));print(d['sent'] if 'sent' in d else d['totals']['sent'])")
  python3 - "$name" "$before" "$after" "$clk" "$sent" "$out/$name.run.json" <<'PY'
import json, sys
name, before, after, clk, sent, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
cpu_us = (after - before) / clk * 1e6
print(f"{name}: sent {sent}, server CPU {cpu_us/ max(sent,1):.1f} us/msg")
PY
  curl -s "http://$addr/metrics" | grep -E '^parley_moderation_(classifier_seconds_(sum|count)|decisions_total|classifier_failures_total)' > "$out/$name.metrics" || true
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$dir"
}
start_classifier() {
  python3 gateway/tests/classifier/serve.py > "$out/classifier.port" &
  cls=$!
  for _ in $(seq 100); do [ -s "$out/classifier.port" ] && break; sleep 0.1; done
  port=$(head -1 "$out/classifier.port")
}
# ORDER: the configurations, in turn (a name may repeat: run-to-run noise).
n=0
for c in ${ORDER:-none rules classifier}; do
  n=$((n+1))
  case $c in
    none) run "$n-none" ;;
    rules) run "$n-rules" --moderation-rules "$out/rules.json" ;;
    classifier)
      start_classifier
      run "$n-classifier" --moderation-rules "$out/rules-cls.json" --moderation-classifier-url "http://127.0.0.1:$port/classify"
      kill $cls ;;
  esac
done
