#!/usr/bin/env bash
# Installs the Debian packages the test suite and the interop drivers need.
# Used by .ci/run and by `just deps`. Idempotent: only missing packages are installed.
# Never leaves a daemon from these packages running (prosody must not keep 5222 bound).
set -euo pipefail

PKGS=(go-sendxmpp python3-slixmpp profanity tmux sqlite3 prosody lua-sec lua-unbound openssl ca-certificates)

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
    echo "deps: not root and no sudo; install manually: ${PKGS[*]}" >&2; exit 1
  fi
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

# Stop a prosody daemon (started by the package or left by anything else) by its PID file.
stop_system_prosody() {
  local pidf pid
  for pidf in /run/prosody/prosody.pid /var/run/prosody/prosody.pid; do
    if [ -s "$pidf" ]; then
      pid=$(cat "$pidf")
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "deps: stopping system prosody (pid $pid)"
        "${SUDO[@]}" kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    fi
  done
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prosody >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/prosody ]; then
    "${SUDO[@]}" update-rc.d prosody disable >/dev/null 2>&1 || true
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  # Forbid maintainer scripts from starting services while we install.
  prc=/usr/sbin/policy-rc.d
  backup=""
  if [ -e "$prc" ]; then backup=$(mktemp); "${SUDO[@]}" cp -p "$prc" "$backup"; fi
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$prc" >/dev/null
  "${SUDO[@]}" chmod 0755 "$prc"
  restore() {
    if [ -n "$backup" ]; then "${SUDO[@]}" cp -p "$backup" "$prc"; rm -f "$backup"; else "${SUDO[@]}" rm -f "$prc"; fi
  }
  trap restore EXIT
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
  restore
  trap - EXIT
else
  echo "deps: all test packages present"
fi

stop_system_prosody
