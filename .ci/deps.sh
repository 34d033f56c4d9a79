#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Used by .ci/run and `just deps`.
# Idempotent: installs only what is missing (apt-get update runs only then), and checks
# the result. Never leaves a daemon from these packages running.
#
#   go-sendxmpp      xmpp/interop: send and listen (-l) against the test server
#   python3-slixmpp  xmpp/interop: testdata/interop/slixmpp_client.py (run by /usr/bin/python3)
#   profanity, tmux  xmpp/interop: profanity driven in a private tmux server
#   prosody          a reference XMPP server for the federation (s2s) tests; the package's
#                    own daemon is kept from starting and stopped if it runs
set -euo pipefail

#   biboumi, ngircd  transports/interop: Debian's XMPP-IRC gateway against the component
#                    port, with ngircd as the IRC network
#   sqlite3          the compliance archive's documented queries run through the sqlite3 CLI
PKGS=(go-sendxmpp python3-slixmpp profanity tmux prosody biboumi ngircd sqlite3)

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
		echo "deps: not root and no sudo; install by hand: ${PKGS[*]}" >&2
		exit 1
	fi
fi

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
		missing+=("$p")
	fi
done

# Stop a daemon a package started (or anything else left running) by its PID
# file, and keep it from starting at boot. Usage: stop_system_daemon NAME PIDFILE...
stop_system_daemon() {
	local name=$1 pidf pid
	shift
	for pidf in "$@"; do
		[ -s "$pidf" ] || continue
		pid=$(cat "$pidf")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
			echo "deps: stopping the system $name (pid $pid)"
			"${SUDO[@]}" kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			if kill -0 "$pid" 2>/dev/null; then "${SUDO[@]}" kill -9 "$pid" 2>/dev/null || true; fi
		fi
	done
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		"${SUDO[@]}" systemctl disable --now "$name" >/dev/null 2>&1 || true
	fi
	if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$name" ]; then
		"${SUDO[@]}" update-rc.d "$name" disable >/dev/null 2>&1 || true
	fi
}

if [ "${#missing[@]}" -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	# Forbid maintainer scripts from starting services while we install.
	prc=/usr/sbin/policy-rc.d
	backup=""
	if [ -e "$prc" ]; then
		backup=$(mktemp)
		"${SUDO[@]}" cp -p "$prc" "$backup"
	fi
	printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$prc" >/dev/null
	"${SUDO[@]}" chmod 0755 "$prc"
	restore() {
		if [ -n "$backup" ]; then
			"${SUDO[@]}" cp -p "$backup" "$prc"
			rm -f "$backup"
		else
			"${SUDO[@]}" rm -f "$prc"
		fi
	}
	trap restore EXIT
	apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
	"${SUDO[@]}" "${apt[@]}" update -qq
	"${SUDO[@]}" "${apt[@]}" install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >/dev/null
	restore
	trap - EXIT
else
	echo "deps: all test packages present"
fi

stop_system_daemon prosody /run/prosody/prosody.pid /var/run/prosody/prosody.pid
# A system ngircd on 0.0.0.0:6667 would keep the test's ngircd from binding.
stop_system_daemon ngircd /run/ngircd/ngircd.pid /var/run/ngircd/ngircd.pid
stop_system_daemon biboumi /run/biboumi/biboumi.pid

# Check what the tests will look for.
[ -x /usr/sbin/ngircd ] || { echo "deps: ngircd missing after install" >&2; exit 1; }
for cmd in go-sendxmpp profanity tmux prosody biboumi sqlite3; do
	command -v "$cmd" >/dev/null || { echo "deps: $cmd missing after install" >&2; exit 1; }
done
/usr/bin/python3 -c 'import slixmpp' 2>/dev/null || {
	echo "deps: /usr/bin/python3 cannot import slixmpp" >&2
	exit 1
}
