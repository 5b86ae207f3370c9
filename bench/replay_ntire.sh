#!/usr/bin/env bash
# Replay the shared NTIRE folders (by hand, not CI): bench/replay_ntire.sh [PYTHON] [OUT]
# OUT: the output folder (default results/replay, ignored by git).
# PYTHON: the interpreter of the environment to replay in (default: python3 on PATH, with the harness installed).
set -euo pipefail
PY=${1:-python3}
OUT=${2:-results/replay}
SHARED=${ESR_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
"$PY" -m harness.cli replay "$SHARED/submissions/ntire2022" --published "$SHARED/submissions/ntire2022/published_table.csv" \
    --oracle --python "$PY" --out "$OUT/ntire2022"
"$PY" -m harness.cli replay "$SHARED/submissions/ntire2025" --python "$PY" --out "$OUT/ntire2025"
