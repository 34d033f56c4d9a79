#!/usr/bin/env bash
# Interop driver: the real profanity console client (Debian's profanity 0.13.1, libstrophe 0.12.2)
# driven under tmux, reading its screen with capture-pane, the way a person would use it.
#
# Usage:
#   profanity.sh login-and-send    JID PASS PORT TO BODY
#       log in, /msg TO BODY, check the screen shows the login and "me: BODY", quit.
#   profanity.sh login-and-receive JID PASS PORT FROM BODY
#       log in, open a chat window with FROM, print "READY" on stdout, wait until
#       "FROM...: BODY" is on screen, quit. Start it in the background and send after READY.
#   profanity.sh login JID PASS PORT
#       log in and quit.
#
# Environment (all optional):
#   PROFANITY_SERVER   host to connect to (default 127.0.0.1)
#   PROFANITY_TLS      starttls (default) | direct     (direct = profanity's "tls legacy")
#   PROFANITY_CERT     prompt (default): answer profanity's untrusted-certificate prompt with
#                      "/tls allow"; trust: pass "tls trust" to /connect (STARTTLS only:
#                      profanity cannot combine "trust" with "legacy").
#   PROFANITY_TIMEOUT  seconds to wait for each step (default 20)
#   PROFANITY_WORKDIR  private dir (HOME, XDG dirs, tmux socket); default: a new mktemp -d,
#                      removed at exit unless PROFANITY_KEEP=1 or the run failed.
#
# Exit 0 on success; 1 with "FAIL: reason" on stderr and the last screen dumped otherwise.
# Nothing touches the real HOME: profanity gets HOME/XDG_* inside the work dir, and tmux a
# private socket (-S), so the session is killed by that socket, never by name matching.
# profanity/libstrophe 0.12 choose the SASL mechanism themselves (strongest offered:
# SCRAM-SHA-512 > SCRAM-SHA-256 > SCRAM-SHA-1 > DIGEST-MD5 > PLAIN; no -PLUS); it cannot be forced.
set -euo pipefail

SERVER=${PROFANITY_SERVER:-127.0.0.1}
TLS_MODE=${PROFANITY_TLS:-starttls}
CERT_MODE=${PROFANITY_CERT:-prompt}
STEP_TIMEOUT=${PROFANITY_TIMEOUT:-20}

WORK=""
OWN_WORK=0
TMUX_SOCK=""
SESSION="prof"
PANE_PID=""
FAILED=0

log() { printf '%s profanity.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

tm() { tmux -S "$TMUX_SOCK" "$@"; }

screen() { tm capture-pane -p -J -t "$SESSION" -S -200 2>/dev/null || true; }

cleanup() {
	if [ -n "$TMUX_SOCK" ] && [ -S "$TMUX_SOCK" ]; then
		if [ -z "$PANE_PID" ]; then PANE_PID=$(tm display -p -t "$SESSION" '#{pane_pid}' 2>/dev/null || true); fi
		# End profanity first while the tmux server (its parent) is there to reap it.
		if [ -n "$PANE_PID" ] && kill -0 "$PANE_PID" 2>/dev/null; then
			kill "$PANE_PID" 2>/dev/null || true
			for _ in $(seq 1 30); do kill -0 "$PANE_PID" 2>/dev/null || break; sleep 0.1; done
		fi
		tm kill-server 2>/dev/null || true
	fi
	if [ -n "$PANE_PID" ] && kill -0 "$PANE_PID" 2>/dev/null; then
		kill "$PANE_PID" 2>/dev/null || true
	fi
	if [ "$OWN_WORK" = 1 ] && [ "${PROFANITY_KEEP:-0}" != 1 ] && [ "$FAILED" = 0 ]; then
		rm -rf "$WORK"
	elif [ -n "$WORK" ]; then
		log "work dir kept: $WORK"
	fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fail() {
	FAILED=1
	echo "FAIL: $*" >&2
	echo "----- last profanity screen -----" >&2
	screen | grep -v '^[[:space:]]*$' | tail -40 >&2 || true
	echo "---------------------------------" >&2
	exit 1
}

# wait_for REGEX [TIMEOUT]: poll the screen until an extended regex matches.
wait_for() {
	local re=$1 t=${2:-$STEP_TIMEOUT} deadline
	deadline=$(($(date +%s) + t))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if screen | grep -Eq -- "$re"; then return 0; fi
		if ! tm has-session -t "$SESSION" 2>/dev/null; then return 1; fi
		sleep 0.2
	done
	return 1
}

type_line() { tm send-keys -t "$SESSION" -l -- "$1"; tm send-keys -t "$SESSION" Enter; }

start() {
	command -v profanity >/dev/null || fail "profanity is not installed"
	command -v tmux >/dev/null || fail "tmux is not installed"
	if [ -n "${PROFANITY_WORKDIR:-}" ]; then WORK=$PROFANITY_WORKDIR; mkdir -p "$WORK"; else
		WORK=$(mktemp -d "${TMPDIR:-/tmp}/profanity-drv.XXXXXX"); OWN_WORK=1
	fi
	mkdir -p "$WORK/home/.config/profanity" "$WORK/home/.local/share"
	# Quiet, predictable UI; no autoconnect, no OS notifications.
	cat >"$WORK/home/.config/profanity/profrc" <<-'EOF'
	[ui]
	splash=false
	titlebar.show=false
	[notifications]
	message=false
	room=false
	invite=false
	sub=false
	[logging]
	chlog=true
	EOF
	TMUX_SOCK="$WORK/tmux.sock"
	tm -f /dev/null new-session -d -s "$SESSION" -x 160 -y 48 \
		env -i PATH="$PATH" TERM=screen LANG=C.UTF-8 HOME="$WORK/home" \
		XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share" \
		profanity
	PANE_PID=$(tm display -p -t "$SESSION" '#{pane_pid}')
	wait_for 'Profanity|Type .?/help' || fail "profanity did not start"
}

# login JID PASS PORT
login() {
	local jid=$1 pass=$2 port=$3 tlsarg
	case "$TLS_MODE" in
	starttls) if [ "$CERT_MODE" = trust ]; then tlsarg="tls trust"; else tlsarg="tls force"; fi ;;
	direct) tlsarg="tls legacy" ;;
	*) fail "PROFANITY_TLS must be starttls or direct" ;;
	esac
	type_line "/connect $jid server $SERVER port $port $tlsarg"
	wait_for 'Enter password' || fail "no password prompt after /connect"
	type_line "$pass"
	local deadline=$(($(date +%s) + STEP_TIMEOUT)) answered=0 s
	while :; do
		s=$(screen)
		if grep -Eq 'logged in successfully' <<<"$s"; then break; fi
		if grep -Eq "Login failed|Connection failed|Authentication failed|Disconnected|Lost connection" <<<"$s"; then
			fail "login failed for $jid"
		fi
		if [ "$answered" = 0 ] && grep -Fq "Use '/tls allow'" <<<"$s"; then
			if [ "$CERT_MODE" = trust ] && [ "$TLS_MODE" = starttls ]; then
				fail "certificate prompt despite 'tls trust'"
			fi
			log "answering certificate prompt with /tls allow"
			type_line "/tls allow"
			answered=1
		fi
		[ "$(date +%s)" -lt "$deadline" ] || fail "timeout waiting for login of $jid"
		sleep 0.2
	done
	log "logged in as $jid (port $port, $TLS_MODE, cert=$CERT_MODE)"
}

quit() {
	type_line "/quit" || true
	local deadline=$(($(date +%s) + 5))
	while tm has-session -t "$SESSION" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
}

# regex-escape a literal string for grep -E
esc() { printf '%s' "$1" | sed -e 's/[][\.*^$?+(){}|/]/\\&/g'; }

cmd_login() {
	[ $# -eq 3 ] || { echo "usage: $0 login JID PASS PORT" >&2; exit 2; }
	start
	login "$1" "$2" "$3"
	quit
	echo "OK login $1"
}

cmd_login_and_send() {
	[ $# -eq 5 ] || { echo "usage: $0 login-and-send JID PASS PORT TO BODY" >&2; exit 2; }
	local jid=$1 pass=$2 port=$3 to=$4 body=$5
	start
	login "$jid" "$pass" "$port"
	type_line "/msg $to $body"
	wait_for "me: $(esc "$body")" || fail "sent message not shown on screen"
	# A round trip to the server after the message (XEP-0199 ping via /ping, answered in the
	# console window) so the server has processed the message before we quit.
	type_line "/win 1"
	type_line "/ping"
	wait_for 'Ping response from server' || log "no ping response shown (continuing)"
	quit
	echo "OK sent $to $body"
}

cmd_login_and_receive() {
	[ $# -eq 5 ] || { echo "usage: $0 login-and-receive JID PASS PORT FROM BODY" >&2; exit 2; }
	local jid=$1 pass=$2 port=$3 from=$4 body=$5
	start
	login "$jid" "$pass" "$port"
	type_line "/msg $from"
	wait_for "$(esc "$from")" || fail "chat window for $from did not open"
	echo "READY"
	wait_for "$(esc "${from%%/*}")[^ ]*: $(esc "$body")" "$((STEP_TIMEOUT * 2))" ||
		fail "message '$body' from $from not shown"
	quit
	echo "OK received $from $body"
}

case "${1:-}" in
login) shift; cmd_login "$@" ;;
login-and-send) shift; cmd_login_and_send "$@" ;;
login-and-receive) shift; cmd_login_and_receive "$@" ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
