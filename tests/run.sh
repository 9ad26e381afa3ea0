#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs the real BitTorrent clients the
# interop tests use (when missing, as root), then runs cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
/usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || need+=(python3-libtorrent)
command -v rtorrent >/dev/null 2>&1 || need+=(rtorrent)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
  fi
fi

command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo test --all-targets "$@"
