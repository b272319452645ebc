#!/usr/bin/env bash
# Throwaway SolrCloud 9.x (embedded ZooKeeper + 2 Jetty nodes) for integration tests, from Maven
# Central jars, no Docker. Usage: solr-test.sh fetch|start|wait|stop|status   (see README.md)
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # pom.xml, src/, configset/, log4j2.xml
VERSION=${SOLR_VERSION:-9.10.1}
LIB=${SOLR_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/solr-lib}   # jar cache, outside the repo
HOST=127.0.0.1
PORT=${SOLR_PORT:-8983}          # node 1, fixed: clients use http://127.0.0.1:$SOLR_PORT/solr
PORT2=${SOLR_PORT2:-0}           # node 2 (0 = any free port)
RUN=${SOLR_RUN:-/tmp/parley-solr-$PORT}   # cluster data, logs, tmp, pid; wiped by every start
HEAP=${SOLR_HEAP:-768m}
COLLECTION=${SOLR_COLLECTION:-parley_messages}
SHARDS=${SOLR_SHARDS:-2}
MAX_CLAUSES=${SOLR_MAX_CLAUSES:-1024}   # maxBooleanClauses (also caps {!complexphrase} prefix expansion)
START_TIMEOUT=${SOLR_START_TIMEOUT:-120}
STOP_TIMEOUT=${SOLR_STOP_TIMEOUT:-30}
# Solr 9 runs on Java 11+; 17 is what the machines have (Solr 10 would need 21).
JAVA=${SOLR_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}
JAVAC=${JAVA%/java}/javac
PIDFILE=$RUN/solr.pid
MARKER=.parley-solr-run         # only a dir holding this file is ever wiped
MAIN=ParleySolr
BASE="http://$HOST:$PORT/solr"

die() { echo "solr-test: $*" >&2; exit 1; }

fetch() {
  if [ -f "$LIB/.complete-$VERSION" ]; then
    echo "jars for Solr $VERSION already cached in $LIB"; return
  fi
  command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install -y maven)"
  local tmp="$LIB.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # solr-test-framework's runtime closure (solr-core, Jetty 10, ZooKeeper, Lucene, ...).
  # The non-Linux-x86_64 netty-tcnative natives are dropped (4 MB; unused on these machines).
  JAVA_HOME=${JAVA%/bin/java} mvn -B -f "$KIT/pom.xml" -Dsolr.version="$VERSION" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" \
      -DexcludeClassifiers=osx-x86_64,osx-aarch_64,windows-x86_64,linux-aarch_64 \
      >"$tmp.log" 2>&1 \
    || { tail -n 40 "$tmp.log" >&2; die "maven failed (full log: $tmp.log)"; }
  rm -f "$tmp.log"
  ls "$tmp/solr-core-$VERSION.jar" "$tmp/solr-test-framework-$VERSION.jar" >/dev/null   # sanity
  touch "$tmp/.complete-$VERSION"
  if [ -e "$LIB" ]; then   # replace an older version's jars, never an unrelated dir (SOLR_LIB typo)
    compgen -G "$LIB/solr-core-*.jar" >/dev/null || [ -z "$(ls -A "$LIB")" ] \
      || die "$LIB exists and holds no Solr jars; refusing to replace it"
    rm -rf "$LIB"
  fi
  mkdir -p "$(dirname "$LIB")"; mv "$tmp" "$LIB"
  local jars=("$LIB"/*.jar)
  echo "fetched ${#jars[@]} jars ($(du -sh "$LIB" | cut -f1)) for Solr $VERSION into $LIB"
}

classpath() { local jars=("$LIB"/*.jar); (IFS=:; echo "${jars[*]}"); }

# The launcher is compiled into the cache, next to the jars it was compiled against, as a jar (the
# class-data-sharing archive below accepts only jars on the class path); it is rebuilt when the
# source is newer.
LAUNCHER=$LIB/launcher/$MAIN.jar
CDS=$LIB/launcher/$MAIN.jsa
compile() {
  local src="$KIT/src/$MAIN.java" tmp="$LIB/launcher.tmp.$$"
  if [ -f "$LAUNCHER" ] && [ "$LAUNCHER" -nt "$src" ]; then return; fi
  [ -x "$JAVAC" ] || die "javac not found at $JAVAC (Debian: apt-get install -y openjdk-17-jdk-headless)"
  rm -rf "$tmp"; mkdir -p "$tmp/classes"
  "$JAVAC" -nowarn -encoding UTF-8 --release 17 -cp "$(classpath)" -d "$tmp/classes" "$src" \
    || { rm -rf "$tmp"; die "compiling $src failed"; }
  "${JAVAC%/javac}/jar" --create --file "$tmp/$MAIN.jar" -C "$tmp/classes" . || die "jar failed"
  rm -rf "$tmp/classes" "$LIB/launcher"; mv "$tmp" "$LIB/launcher"
}

# running: the process exists and is not a zombie (an unreaped zombie still answers kill -0;
# by the time it is one, its sockets are closed). ours: running and it is our launcher.
running() {
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
ours() { running "$1" && grep -qa "$MAIN" "/proc/$1/cmdline" 2>/dev/null; }
pid_alive() { [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")"; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

start() {
  "$JAVA" -version 2>&1 | grep -qE 'version "(11|17|21)\.' || die "need Java 11, 17 or 21 at $JAVA (set SOLR_JAVA)"
  pid_alive && die "already running (pid $(cat "$PIDFILE"), run dir $RUN); stop it first"
  local p; for p in "$PORT" "$PORT2"; do
    [ "$p" = 0 ] && continue
    port_open "$p" && die "port $HOST:$p is already in use (set SOLR_PORT / SOLR_PORT2)"
  done
  [ -f "$LIB/.complete-$VERSION" ] || fetch
  compile

  # Wipe the run dir, but never a dir we did not create (SOLR_RUN typo safety).
  if [ -e "$RUN" ]; then
    [ -f "$RUN/$MARKER" ] || [ -z "$(ls -A "$RUN")" ] || die "$RUN is not empty and not ours; refusing to wipe it"
    rm -rf "$RUN"
  fi
  mkdir -p "$RUN"/{logs,tmp}
  touch "$RUN/$MARKER"

  local jvm=(
    -Xms"${SOLR_HEAP_MIN:-128m}" -Xmx"$HEAP" -Xss512k
    -XX:+UseSerialGC -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true
    -Djava.io.tmpdir="$RUN/tmp"
    -Djava.awt.headless=true
    -Dfile.encoding=UTF-8
    -Dlog4j.configurationFile="file://$KIT/log4j2.xml"
    -Dsolr.log.dir="$RUN/logs"
    -Dlog4j2.formatMsgNoLookups=true
    -DhostName="$HOST"                          # ZooKeeper test server bind/advertise address
    -Dsolr.allowPaths="$RUN"
    # --- test-speed knobs (throwaway data) ---
    -DleaderVoteWait=0                          # a 1-replica shard need not wait for others
    -Dsolr.autoCommit.maxTime=60000
    -DmetricsEnabled=false                      # MiniSolrCloudCluster's solr.xml: no metrics
    -Dtests.zk.violationReportAction=IGNORE     # no ZK watch-count report on stdout at exit
    -Dsolr.jetty.request.header.size=65536
    -Dsolr.max.booleanClauses="$MAX_CLAUSES"
    # --- what the launcher reads ---
    -Dparley.solr.run="$RUN"
    -Dparley.solr.conf="$KIT/configset/conf"
    -Dparley.solr.port="$PORT"
    -Dparley.solr.port2="$PORT2"
    -Dparley.solr.collection="$COLLECTION"
    -Dparley.solr.shards="$SHARDS"
  )
  # Class-data sharing (AppCDS): the first run of a freshly compiled launcher records the classes it
  # loaded into $RUN/cds.jsa when the JVM exits; `stop` moves that into the cache and later starts
  # map it (~35% faster start). SOLR_CDS=0 turns it off. A stale archive is ignored by the JVM.
  local cds=()
  if [ "${SOLR_CDS:-1}" = 1 ]; then
    if [ -f "$CDS" ]; then cds=(-XX:SharedArchiveFile="$CDS")
    else cds=(-XX:ArchiveClassesAtExit="$RUN/cds.jsa"); fi
    cds+=(-Xlog:cds=off -Xlog:cds+dynamic=off)
  fi
  # shellcheck disable=SC2206
  local extra=(${SOLR_JVM_OPTS:-})   # extra JVM flags, space separated
  nohup "$JAVA" "${jvm[@]}" "${cds[@]}" "${extra[@]}" -cp "$LAUNCHER:$(classpath)" "$MAIN" \
        >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  echo "started Solr $VERSION pid $(cat "$PIDFILE") on $BASE (collection $COLLECTION); logs in $RUN/logs"
}

# A real query: prints numFound of *:* on the collection; fails if Solr does not answer with it.
probe() {
  curl -fsS --max-time 5 "$BASE/$COLLECTION/select?q=*:*&rows=0&wt=json" 2>/dev/null \
    | grep -oE '"numFound":[0-9]+' | cut -d: -f2 | grep .
}

# stdout.log holds WARN+ lines and the launcher's own; when the launcher failed, show its stack.
log_tail() {
  local f="$RUN/logs/stdout.log"
  if grep -q '^parley-solr: FAILED' "$f" 2>/dev/null; then
    sed -n '/^parley-solr: FAILED/,$p' "$f" | head -n "${1:-40}" >&2
  else
    tail -n "${1:-40}" "$f" >&2 2>/dev/null || true
  fi
}

wait_ready() {
  [ -f "$PIDFILE" ] || die "no pid file in $RUN: not started"
  local t0=$SECONDS pid n; pid=$(cat "$PIDFILE")
  until [ -f "$RUN/ready" ] && n=$(probe); do
    if ! running "$pid"; then
      log_tail 30
      # the first errors and their causes in solr.log (e.g. a bad schema.xml)
      grep -E '^\S+ \S+ ERROR|^Caused by' "$RUN/logs/solr.log" 2>/dev/null \
        | grep -v "requires the 'stat' command" | head -n 8 | cut -c1-400 >&2 || true
      die "Solr (pid $pid) exited during startup (full logs: $RUN/logs)"
    fi
    if (( SECONDS - t0 >= START_TIMEOUT )); then
      log_tail 40; tail -n 20 "$RUN/logs/solr.log" >&2 2>/dev/null || true
      die "not ready after ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  echo "Solr ready on $BASE/$COLLECTION after $(( SECONDS - t0 ))s (pid $pid, numFound $n)"
}

# After a clean stop: keep the class-data archive the JVM wrote at exit (see start).
keep_cds() {
  if [ -s "$RUN/cds.jsa" ] && [ ! -f "$CDS" ] && [ -d "$LIB/launcher" ]; then
    mv "$RUN/cds.jsa" "$CDS.tmp.$$" && mv "$CDS.tmp.$$" "$CDS" || true
  fi
}

stop() {
  [ -f "$PIDFILE" ] || { echo "not running (no pid file in $RUN)"; return 0; }
  local pid i; pid=$(cat "$PIDFILE")
  if ! ours "$pid"; then
    rm -f "$PIDFILE"; echo "not running (pid $pid already gone)"; return 0
  fi
  kill -TERM "$pid"
  for (( i = 0; i < STOP_TIMEOUT * 5; i++ )); do     # poll every 0.2 s
    running "$pid" || { rm -f "$PIDFILE"; keep_cds; echo "stopped pid $pid"; return 0; }
    sleep 0.2
  done
  echo "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do running "$pid" || break; sleep 0.1; done
  running "$pid" && die "pid $pid survived SIGKILL"
  rm -f "$PIDFILE"; echo "killed pid $pid"
}

status() {
  local n
  if [ -f "$RUN/ready" ] && n=$(probe); then echo "up: Solr on $BASE/$COLLECTION (numFound $n)"
  elif pid_alive; then echo "starting (pid $(cat "$PIDFILE")), $COLLECTION not answering yet"; return 1
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
