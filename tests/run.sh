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
command -v transmission-daemon >/dev/null 2>&1 || need+=(transmission-daemon)
command -v transmission-remote >/dev/null 2>&1 || need+=(transmission-cli)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The cluster tests run their own Redis.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The page's layout test drives headless Chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The build: OpenSSL's headers for the DTLS of the seeder's WebRTC side (str0m).
pkg-config --exists openssl >/dev/null 2>&1 || need+=(libssl-dev pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The tests run their own transmission-daemon in a network namespace; the package's
    # service (started where systemd runs) is not wanted.
    if [[ " ${need[*]} " == *" transmission-daemon "* ]]; then
      systemctl disable --now transmission-daemon >/dev/null 2>&1 || true
    fi
  else
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
  fi
fi

# WebTorrent for the interop tests, from its lock file (tests/interop/webtorrent/.npmrc: no
# install scripts, no optional native packages).
wt=tests/interop/webtorrent
if [ ! -f $wt/node_modules/.package-lock.json ] || [ $wt/package-lock.json -nt $wt/node_modules/.package-lock.json ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd $wt && npm ci --loglevel=error) || echo "npm ci in $wt failed: the WebTorrent tests will fail" >&2
  else
    echo "missing npm (and Node.js): the WebTorrent tests need them" >&2
  fi
fi

command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo test --all-targets "$@"
