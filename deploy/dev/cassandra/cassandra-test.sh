#!/usr/bin/env bash
# Single-node Apache Cassandra 5.0.x for integration tests, from Maven Central jars, no Docker.
# Usage: cassandra-test.sh fetch|start|wait|stop|status   (see README.md beside this file)
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # pom.xml, cassandra.yaml, logback.xml
VERSION=${CASS_VERSION:-5.0.8}
LIB=${CASS_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/cassandra-lib}   # jar cache, outside the repo
HOST=127.0.0.1
CQL_PORT=${CASS_CQL_PORT:-9042}
STORAGE_PORT=${CASS_STORAGE_PORT:-7000}
RUN=${CASS_RUN:-/tmp/parley-cassandra-$CQL_PORT}      # data, logs, tmp, pid; wiped by every start
HEAP=${CASS_HEAP:-3g}
START_TIMEOUT=${CASS_START_TIMEOUT:-120}
STOP_TIMEOUT=${CASS_STOP_TIMEOUT:-30}
# Cassandra 5.0 runs on Java 11 or 17 ONLY (not the Temurin 25 JDK: no SecurityManager since 24).
JAVA=${CASS_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}
PIDFILE=$RUN/cassandra.pid
MARKER=.parley-cassandra-run    # only a dir holding this file is ever wiped

die() { echo "cassandra-test: $*" >&2; exit 1; }

fetch() {
  if [ -f "$LIB/.complete-$VERSION" ]; then
    echo "jars for Cassandra $VERSION already cached in $LIB"; return
  fi
  command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install -y maven)"
  local tmp="$LIB.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # cassandra-all's runtime closure (about 100 jars, 67 MB). Maven's own cache is ~/.m2.
  JAVA_HOME=${JAVA%/bin/java} mvn -B -f "$KIT/pom.xml" -Dcassandra.version="$VERSION" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1 \
    || { tail -n 40 "$tmp.log" >&2; die "maven failed (full log: $tmp.log)"; }
  rm -f "$tmp.log"
  ls "$tmp/cassandra-all-$VERSION.jar" "$tmp"/jamm-*.jar >/dev/null   # sanity
  touch "$tmp/.complete-$VERSION"
  if [ -e "$LIB" ]; then   # replace an older version's jars, never an unrelated dir (CASS_LIB typo)
    compgen -G "$LIB/cassandra-all-*.jar" >/dev/null || [ -z "$(ls -A "$LIB")" ] \
      || die "$LIB exists and holds no Cassandra jars; refusing to replace it"
    rm -rf "$LIB"
  fi
  mkdir -p "$(dirname "$LIB")"; mv "$tmp" "$LIB"
  local jars=("$LIB"/*.jar)
  echo "fetched ${#jars[@]} jars for Cassandra $VERSION into $LIB"
}

# running: the process exists and is not a zombie (an unreaped zombie still answers kill -0;
# by the time it is one, its sockets are closed). ours: running and it is a CassandraDaemon.
running() {
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
ours() { running "$1" && grep -qa CassandraDaemon "/proc/$1/cmdline" 2>/dev/null; }
pid_alive() { [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")"; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

start() {
  "$JAVA" -version 2>&1 | grep -qE 'version "(11|17)\.' || die "need Java 11 or 17 at $JAVA (set CASS_JAVA)"
  pid_alive && die "already running (pid $(cat "$PIDFILE"), run dir $RUN); stop it first"
  local p; for p in "$CQL_PORT" "$STORAGE_PORT"; do
    port_open "$p" && die "port $HOST:$p is already in use (set CASS_CQL_PORT / CASS_STORAGE_PORT)"
  done
  [ -f "$LIB/.complete-$VERSION" ] || fetch

  # Wipe the run dir, but never a dir we did not create (CASS_RUN typo safety).
  # CASS_KEEP_DATA=1 restarts on the data of the previous run (fault tests: stop, then start).
  if [ -e "$RUN" ] && [ "${CASS_KEEP_DATA:-0}" != 1 ]; then
    [ -f "$RUN/$MARKER" ] || [ -z "$(ls -A "$RUN")" ] || die "$RUN is not empty and not ours; refusing to wipe it"
    rm -rf "$RUN"
  fi
  mkdir -p "$RUN"/{data,logs,tmp,triggers}
  touch "$RUN/$MARKER"

  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # Cassandra wants 100000; it only warns below that
  local jars=("$LIB"/*.jar) jamm=("$LIB"/jamm-*.jar) cp
  cp=$(IFS=:; echo "${jars[*]}")

  local jvm=(
    # Heap: -Xms small on purpose. Cassandra calls mlockall(MCL_CURRENT) at boot (as root it
    # succeeds): with -Xms=-Xmx=1g that faults in and pins the whole heap (~1.45 GiB RSS, not ~0.65).
    -Xms"${CASS_HEAP_MIN:-256m}" -Xmx"$HEAP" -Xss256k
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxGCPauseMillis=300
    -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError
    -ea -da:net.openhft...
    -Djava.net.preferIPv4Stack=true
    -Djava.io.tmpdir="$RUN/tmp" -Djna.tmpdir="$RUN/tmp"
    -javaagent:"${jamm[0]}"
    # --- JPMS block: apache/cassandra conf/jvm17-server.options (+2 exports from the jvm11 list) ---
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # --- what bin/cassandra + cassandra-env.sh would add ---
    -Dcassandra-foreground=yes
    -Dcassandra.config="file://$KIT/cassandra.yaml"
    -Dlogback.configurationFile="file://$KIT/logback.xml"
    -Dcassandra.storagedir="$RUN/data"
    -Dcassandra.logdir="$RUN/logs"
    -Dcassandra.triggers_dir="$RUN/triggers"
    -Dcassandra.storage_port="$STORAGE_PORT"
    -Dcassandra.native_transport_port="$CQL_PORT"
    # --- test-speed knobs (single node, throwaway data dir) ---
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=1000
    -Dcassandra.superuser_setup_delay_ms=0
    -Dcassandra.unsafesystem=true
    -Dcassandra.skip_sync=true
    -Dcassandra.system_distributed.default_rf=1
    -Dcassandra.system_traces.default_rf=1
    -Dcassandra.test.ignore_sigar=true                         # no SIGAR native probe
    -Dcassandra.shutdown_announce_in_ms=0                     # stop: no 2 s gossip announce sleep
    -Dcassandra.test.messagingService.nonGracefulShutdown=true # stop: no 2 s messaging quiesce
    # JMX/nodetool: off. To enable: -Dcassandra.jmx.local.port=7199 -Djava.rmi.server.hostname=127.0.0.1
  )
  # shellcheck disable=SC2206
  local extra=(${CASS_JVM_OPTS:-})   # extra JVM flags, space separated
  nohup "$JAVA" "${jvm[@]}" "${extra[@]}" -cp "$cp" org.apache.cassandra.service.CassandraDaemon \
        >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  echo "started Cassandra $VERSION pid $(cat "$PIDFILE") on $HOST:$CQL_PORT (storage $STORAGE_PORT); logs in $RUN/logs"
}

# --- readiness: a real CQL query over the v4 native protocol, in plain bash -------------------
# Frame header: version(1) flags(1) stream(2) opcode(1) length(4), big endian.
# shellcheck disable=SC2059  # the format string IS the byte escape
u8()  { printf "\\x$(printf %02x "$(( $1 & 255 ))")"; }
u16() { u8 $(( $1 >> 8 )); u8 "$1"; }
u32() { u16 $(( $1 >> 16 )); u16 $(( $1 & 65535 )); }
frame() { u8 4; u8 0; u16 1; u8 "$1"; u32 "$2"; }       # request: version 4, stream 1
read_hex() { timeout 5 head -c "$1" <&3 | od -An -v -tx1 | tr -d ' \n'; }

# Prints the server's release_version on success; fails otherwise.
cql_query_probe() {
  local q="SELECT release_version FROM system.local" hdr len body
  exec 3<>"/dev/tcp/$HOST/$CQL_PORT" || return 1
  # STARTUP {CQL_VERSION: 3.0.0} -> expect READY (opcode 0x02)
  { frame 1 22; u16 1; u16 11; printf CQL_VERSION; u16 5; printf 3.0.0; } >&3
  hdr=$(read_hex 9); [ "${hdr:0:2}${hdr:8:2}" = "8402" ] || return 1
  # QUERY q at consistency ONE, no flags -> expect RESULT (0x08) of kind Rows (2) with one row
  { frame 7 $(( 4 + ${#q} + 3 )); u32 ${#q}; printf %s "$q"; u16 1; u8 0; } >&3
  hdr=$(read_hex 9); [ "${hdr:0:2}${hdr:8:2}" = "8408" ] || return 1
  len=$(( 16#${hdr:10:8} ))
  body=$(timeout 5 head -c "$len" <&3 | tr -c '[:print:]' ' ')
  exec 3<&-
  grep -oE '[0-9]+\.[0-9]+\.[0-9]+' <<<"$body" | tail -1 | grep . || return 1
}
probe() { (cql_query_probe) 2>/dev/null; }

wait_ready() {
  [ -f "$PIDFILE" ] || die "no pid file in $RUN: not started"
  local t0=$SECONDS pid ver; pid=$(cat "$PIDFILE")
  until ver=$(probe); do
    if ! running "$pid"; then
      tail -n 40 "$RUN/logs/stdout.log" "$RUN/logs/system.log" >&2 2>/dev/null || true
      die "Cassandra (pid $pid) exited during startup"
    fi
    if (( SECONDS - t0 >= START_TIMEOUT )); then
      tail -n 40 "$RUN/logs/system.log" >&2 2>/dev/null || true
      die "not ready after ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  echo "Cassandra $ver ready on $HOST:$CQL_PORT after $(( SECONDS - t0 ))s (pid $pid)"
}

stop() {
  [ -f "$PIDFILE" ] || { echo "not running (no pid file in $RUN)"; return 0; }
  local pid i; pid=$(cat "$PIDFILE")
  if ! ours "$pid"; then
    rm -f "$PIDFILE"; echo "not running (pid $pid already gone)"; return 0
  fi
  kill -TERM "$pid"
  for (( i = 0; i < STOP_TIMEOUT * 5; i++ )); do     # poll every 0.2 s
    running "$pid" || { rm -f "$PIDFILE"; echo "stopped pid $pid"; return 0; }
    sleep 0.2
  done
  echo "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do running "$pid" || break; sleep 0.1; done
  running "$pid" && die "pid $pid survived SIGKILL"
  rm -f "$PIDFILE"; echo "killed pid $pid"
}

status() {
  local ver
  if ver=$(probe); then echo "up: Cassandra $ver on $HOST:$CQL_PORT"
  elif pid_alive; then echo "starting (pid $(cat "$PIDFILE")), CQL not answering yet"; return 1
  else echo "down"; return 1
  fi
}

case "${1:-}" in
  fetch)  fetch ;;
  start)  start ;;
  wait)   wait_ready ;;
  stop)   stop ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|wait|stop|status" >&2; exit 2 ;;
esac
