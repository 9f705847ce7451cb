#!/usr/bin/env bash
# Create/refresh the Python venv used by the realtime peer tests.
#
# Usage: tests/peer/setup.sh [VENV]   (default: <repo>/target/realtime-peer)
# Env:   PYTHON (default python3)
#
# Idempotent: when $VENV/.ready holds the sha256 of requirements.txt, does nothing.
# Otherwise (re)creates the venv, pip-installs requirements.txt and writes .ready.
# Quiet on success; on failure prints the reason (and pip's log) and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/target/realtime-peer}"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

fail() { echo "tests/peer/setup.sh: $*" >&2; exit 1; }

want="$(sha256sum "$req" | cut -d' ' -f1)" || fail "cannot hash $req"
if [[ -f "$venv/.ready" && "$(cat "$venv/.ready")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

command -v "$python" >/dev/null || fail "$python not found (set PYTHON=...)"
rm -f "$venv/.ready"
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" \
        || fail "'$python -m venv $venv' failed (on Debian: apt-get install python3-venv)"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >"$log" 2>&1; then
    cat "$log" >&2
    fail "pip install -r $req into $venv failed (see above)"
fi
"$venv/bin/python" -c "import openai.types.realtime, websockets" 2>>"$log" \
    || { cat "$log" >&2; fail "installed packages do not import"; }

echo "$want" >"$venv/.ready"
