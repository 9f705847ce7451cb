#!/usr/bin/env bash
# Install what tests/browser.rs needs from Debian's packages: Chromium and
# its WebDriver (chromium, chromium-driver), espeak-ng (the fake
# microphone's speech) and sox (to convert it).
#
# Usage: tests/browser/setup.sh [DIR]   (as root, or with passwordless sudo;
#        DIR, which tests/common's install_peer passes, is not used)
#
# Idempotent: prints nothing and does nothing when every package is
# installed. Otherwise runs `apt-get install -y --no-install-recommends`,
# with one `apt-get update` first if a package is not found. Quiet on
# success; on failure prints apt's log and exits non-zero.
set -euo pipefail

packages=(chromium chromium-driver espeak-ng sox)

fail() { echo "tests/browser/setup.sh: $*" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 && -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
[[ ${#missing[@]} -gt 0 ]] || missing=("${packages[@]}")

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || fail "not root and no sudo: install ${missing[*]} by hand"
    sudo=(sudo -n)
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
install() {
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1
}
if ! install; then
    # The package lists may be missing or stale (a fresh machine).
    "${sudo[@]}" apt-get update -q >>"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
    install || { cat "$log" >&2; fail "apt-get install ${missing[*]} failed"; }
fi
for b in /usr/bin/chromium /usr/bin/chromedriver /usr/bin/espeak-ng /usr/bin/sox; do
    [[ -x "$b" ]] || { cat "$log" >&2; fail "$b missing after install"; }
done
