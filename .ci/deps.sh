#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Used by .ci/run and `just deps`.
# Idempotent: installs only what is missing (apt-get update runs only then), and checks
# the result. Never leaves a daemon from these packages running.
#
#   go-sendxmpp      xmpp/interop: send and listen (-l) against the test server
#   python3-slixmpp  xmpp/interop: testdata/interop/slixmpp_client.py (run by /usr/bin/python3)
#                    and xmpp/mod/pubsub: testdata/slixmpp_pep.py (PEP, caps, avatars, bookmarks)
#                    and xmpp/mod/muc: testdata/muc_slixmpp.py (XEP-0045 rooms, XEP-0313 room archive)
#   profanity, tmux  xmpp/interop: profanity driven in a private tmux server
#   python3-aioxmpp, python3-aiohttp  xmpp/interop: testdata/interop/aioxmpp_client.py (MAM
#                    paging both ways, HTTP upload) and slixmpp_upload.py (slixmpp's xep_0363
#                    plugin needs aiohttp)
#   prosody          a reference XMPP server for the federation (s2s) tests; the package's
#                    own daemon is kept from starting and stopped if it runs
set -euo pipefail

#   biboumi, ngircd  transports/interop: Debian's XMPP-IRC gateway against the component
#                    port, with ngircd as the IRC network
#   inspircd         transports/interop: an IRCv3 network (echo-message, msgid, server-time,
#                    MONITOR, away-notify) for the builtin IRC transport
#   sqlite3          the compliance archive's documented queries run through the sqlite3 CLI
#   clamav, clamav-daemon  policy: virus scanning tests start their own clamd on a private
#                    socket with a signature database they write (no freshclam, no download)
#   ejabberd         the second reference XMPP server of the federation tests (s2s/interop),
#                    run straight from erl with a private epmd port; the package's node and
#                    a system epmd are stopped if they run
#   dnsmasq-base     cmd/gatehouse: `gatehouse doctor` tests ask a private dnsmasq on loopback
#                    for SRV records (the binary only; no system service comes with it)
#   chromium         logging/report: the HTML activity report is opened in headless chromium,
#                    which must run its script and draw the charts
#   slapd, ldap-utils  xmpp/directory: the directory tests run a private slapd (OpenLDAP) on
#                    loopback, loaded with testdata/directory/example.ldif by slapadd
#   nodejs           xmpp/websocket: the npm package @xmpp/client (installed below into
#                    ~/.cache/gatehouse/npm-xmpp, pinned) speaks RFC 7395 WebSocket to the server
PKGS=(go-sendxmpp python3-slixmpp python3-aioxmpp python3-aiohttp profanity tmux prosody biboumi ngircd sqlite3 clamav clamav-daemon ejabberd nodejs dnsmasq-base chromium inspircd slapd ldap-utils)

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
# The package's own slapd (on 389) is not used by the tests.
stop_system_daemon slapd /run/slapd/slapd.pid /var/run/slapd/slapd.pid
# A system ngircd on 0.0.0.0:6667 would keep the test's ngircd from binding.
stop_system_daemon ngircd /run/ngircd/ngircd.pid /var/run/ngircd/ngircd.pid
stop_system_daemon biboumi /run/biboumi/biboumi.pid
# A system InspIRCd on 127.0.0.1:6667.
stop_system_daemon inspircd /run/inspircd/inspircd.pid /var/run/inspircd/inspircd.pid
# clamd and freshclam run under other names than their services: kill by PID
# file with the process name, then disable the service by its name.
stop_system_daemon clamd /run/clamav/clamd.pid
stop_system_daemon clamav-daemon
stop_system_daemon freshclam /run/clamav/freshclam.pid
stop_system_daemon clamav-freshclam
# ejabberd's node (beam, run as user ejabberd) and the Erlang port mapper that
# ejabberdctl or epmd.socket starts; the s2s interop test runs its own of both.
stop_system_daemon ejabberd /run/ejabberd/ejabberd.pid /var/run/ejabberd/ejabberd.pid
epmd_pidf=$(mktemp)
for pid in $(pgrep -x -u ejabberd,epmd epmd 2>/dev/null || true); do
	echo "$pid" >"$epmd_pidf"
	stop_system_daemon epmd "$epmd_pidf"
done
rm -f "$epmd_pidf"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	"${SUDO[@]}" systemctl disable --now epmd.socket >/dev/null 2>&1 || true
fi

# Check what the tests will look for.
[ -x /usr/sbin/ngircd ] || { echo "deps: ngircd missing after install" >&2; exit 1; }
[ -x /usr/sbin/inspircd ] || { echo "deps: inspircd missing after install" >&2; exit 1; }
[ -x /usr/sbin/clamd ] || { echo "deps: clamd missing after install" >&2; exit 1; }
compgen -G '/usr/lib/*/ejabberd-[0-9]*/ebin/ejabberd.app' >/dev/null || {
	echo "deps: ejabberd's Erlang applications missing after install" >&2
	exit 1
}
for cmd in go-sendxmpp profanity tmux prosody biboumi sqlite3 erl epmd; do
	command -v "$cmd" >/dev/null || { echo "deps: $cmd missing after install" >&2; exit 1; }
done
/usr/bin/python3 -c 'import slixmpp' 2>/dev/null || {
	echo "deps: /usr/bin/python3 cannot import slixmpp" >&2
	exit 1
}

# @xmpp/client for the WebSocket interop test (xmpp/websocket/xmppjs_test.go), pinned, in a
# private directory outside the work tree. Debian's nodejs may come without npm.
# ws stands in for the WebSocket that Node before 22 (Debian 12 has 18) does not have built in.
XMPPJS_VERSION=0.14.0
WS_VERSION=8.18.3
XMPPJS_DIR=${GATEHOUSE_NPM_DIR:-$HOME/.cache/gatehouse/npm-xmpp}
if ! grep -qs "\"version\": \"$XMPPJS_VERSION\"" "$XMPPJS_DIR/node_modules/@xmpp/client/package.json" ||
	! grep -qs "\"version\": \"$WS_VERSION\"" "$XMPPJS_DIR/node_modules/ws/package.json"; then
	if ! command -v npm >/dev/null 2>&1; then
		"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends npm >/dev/null
	fi
	echo "deps: installing @xmpp/client@$XMPPJS_VERSION into $XMPPJS_DIR"
	mkdir -p "$XMPPJS_DIR"
	(cd "$XMPPJS_DIR" && npm install --no-audit --no-fund --silent "@xmpp/client@$XMPPJS_VERSION" "ws@$WS_VERSION" >/dev/null)
fi
[ -f "$XMPPJS_DIR/node_modules/@xmpp/client/package.json" ] && [ -f "$XMPPJS_DIR/node_modules/ws/package.json" ] || {
	echo "deps: @xmpp/client missing in $XMPPJS_DIR after install" >&2
	exit 1
}
