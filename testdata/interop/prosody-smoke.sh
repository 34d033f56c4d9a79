#!/usr/bin/env bash
# Proves the interop drivers in this directory against a real Prosody (Debian's 0.12.3) on
# 127.0.0.1, so that a failure against Gatehouse later is Gatehouse's, not the driver's.
#
#   testdata/interop/prosody-smoke.sh            # run everything
#   KEEP=1 testdata/interop/prosody-smoke.sh     # keep the temp dir (logs, client outputs)
#   PROSODY_C2S_PORT=25222 PROSODY_C2S_TLS_PORT=25223 ...   # other ports (defaults 15222/15223)
#
# Starts prosody in the foreground (-F) as a background job with prosody-test.cfg.lua,
# registers alice and bob with prosodyctl (same config), runs every scenario, stops prosody
# by its PID. Needs: prosody, lua-sec, python3-slixmpp, go-sendxmpp, profanity, tmux, openssl
# (.ci/deps.sh installs them). Ends with "N passed, N failed, N skipped"; exit 1 if any failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CFG="$HERE/prosody-test.cfg.lua"
PY=/usr/bin/python3
CLIENT=("$PY" "$HERE/slixmpp_client.py")
PROFANITY="$HERE/profanity.sh"

export PROSODY_C2S_PORT=${PROSODY_C2S_PORT:-15222}
export PROSODY_C2S_TLS_PORT=${PROSODY_C2S_TLS_PORT:-15223}
P=$PROSODY_C2S_PORT
PT=$PROSODY_C2S_TLS_PORT
HOST=127.0.0.1
TIMEOUT=${SMOKE_TIMEOUT:-25}

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/prosody-smoke.XXXXXX")
export PROSODY_TEST_DIR=$TMPD
CA="$TMPD/certs/localhost.crt"
PROSODY_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()

say() { printf '%s smoke: %s\n' "$(date +%H:%M:%S)" "$*"; }

cleanup() {
	local rc=$? pid
	for pid in "${BG_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
	done
	if [ -n "$PROSODY_PID" ] && kill -0 "$PROSODY_PID" 2>/dev/null; then
		kill "$PROSODY_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$PROSODY_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$PROSODY_PID" 2>/dev/null; then kill -9 "$PROSODY_PID" 2>/dev/null || true; fi
		wait "$PROSODY_PID" 2>/dev/null || true
	fi
	if [ "${KEEP:-0}" = 1 ] || [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
		say "kept $TMPD (prosody.log, *.out)"
	else
		rm -rf "$TMPD"
	fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pass() { PASSED=$((PASSED + 1)); say "PASS $1"; }
skip() { SKIPPED=$((SKIPPED + 1)); say "SKIP $1: $2"; }
failc() {
	FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); say "FAIL $1: $2"
	if [ -f "$TMPD/$1.out" ]; then sed 's/^/    | /' "$TMPD/$1.out" | tail -25; fi
}

# slix NAME ARGS...: run a slixmpp scenario in the foreground, expect {"result": "ok"}.
slix() {
	local name=$1; shift
	if timeout $((TIMEOUT + 10)) "${CLIENT[@]}" --server-host "$HOST" --timeout "$TIMEOUT" "$@" \
		>"$TMPD/$name.out" 2>&1 && grep -q '"result": "ok"' "$TMPD/$name.out"; then
		pass "$name"
	else
		failc "$name" "$(grep -o '"reason": .*' "$TMPD/$name.out" | tail -1 || true)"
	fi
}

# slix_expect_fail NAME ARGS...: the driver must report failure (proves it detects failures).
slix_expect_fail() {
	local name=$1; shift
	if timeout $((TIMEOUT + 10)) "${CLIENT[@]}" --server-host "$HOST" --timeout "$TIMEOUT" "$@" \
		>"$TMPD/$name.out" 2>&1; then
		failc "$name" "driver reported success where failure was expected"
	elif grep -q '"result": "fail"' "$TMPD/$name.out"; then
		pass "$name"
	else
		failc "$name" "no result line"
	fi
}

# bg NAME CMD...: start in the background, output to $TMPD/NAME.out; PID in BGPID_<NAME>.
declare -A BGPID
bg() {
	local name=$1; shift
	"$@" >"$TMPD/$name.out" 2>&1 &
	BGPID[$name]=$!
	BG_PIDS+=("$!")
}

# wait_line NAME REGEX [TIMEOUT]: wait until NAME's output has a line matching REGEX.
wait_line() {
	local name=$1 re=$2 t=${3:-$TIMEOUT} deadline
	deadline=$(($(date +%s) + t))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if grep -Eq -- "$re" "$TMPD/$name.out" 2>/dev/null; then return 0; fi
		if ! kill -0 "${BGPID[$name]}" 2>/dev/null; then
			grep -Eq -- "$re" "$TMPD/$name.out" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# bg_done NAME [OKREGEX]: wait for NAME to exit; pass if exit 0 and output matches OKREGEX.
bg_done() {
	local name=$1 re=${2:-'"result": "ok"'} rc=0
	wait "${BGPID[$name]}" || rc=$?
	if [ "$rc" -eq 0 ] && grep -Eq -- "$re" "$TMPD/$name.out"; then
		pass "$name"
	else
		failc "$name" "exit $rc; $(grep -o '"reason": .*' "$TMPD/$name.out" | tail -1 || true)"
	fi
}

bg_kill() {
	local pid=${BGPID[$1]}
	if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
	wait "$pid" 2>/dev/null || true
}

# --- preconditions -----------------------------------------------------------------------
for tool in prosody prosodyctl openssl go-sendxmpp profanity tmux; do
	command -v "$tool" >/dev/null || { say "missing $tool (run .ci/deps.sh)"; exit 1; }
done
"$PY" -c 'import slixmpp' 2>/dev/null || { say "python3-slixmpp missing for $PY"; exit 1; }
for port in "$P" "$PT"; do
	if port_open "$port"; then say "port $port on $HOST is already in use"; exit 1; fi
done

say "versions: prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null)," \
	"slixmpp $("$PY" -c 'import slixmpp; print(slixmpp.__version__)' 2>/dev/null)," \
	"profanity $(dpkg-query -W -f='${Version}' profanity 2>/dev/null)," \
	"go-sendxmpp $(dpkg-query -W -f='${Version}' go-sendxmpp 2>/dev/null)"

# --- certificate: self-signed for 'localhost' only (no IP SAN), like a default server cert ---
mkdir -p "$TMPD/certs" "$TMPD/data"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=localhost" \
	-addext "subjectAltName=DNS:localhost" \
	-keyout "$TMPD/certs/localhost.key" -out "$CA" >/dev/null 2>&1
chmod 0644 "$TMPD/certs/localhost.key"

# --- start prosody ----------------------------------------------------------------------
prosody -F --config "$CFG" >"$TMPD/prosody.stdout" 2>&1 &
PROSODY_PID=$!
deadline=$(($(date +%s) + 20))
until port_open "$P" && port_open "$PT"; do
	if ! kill -0 "$PROSODY_PID" 2>/dev/null; then
		say "prosody exited early"; tail -20 "$TMPD/prosody.stdout" "$TMPD/prosody.log" 2>/dev/null || true; exit 1
	fi
	[ "$(date +%s)" -lt "$deadline" ] || { say "prosody did not listen on $P/$PT"; exit 1; }
	sleep 0.1
done
say "prosody pid $PROSODY_PID on $HOST:$P (STARTTLS) and $HOST:$PT (direct TLS)"

for u in alice bob; do
	prosodyctl --config "$CFG" register "$u" localhost "${u}pass" >>"$TMPD/prosodyctl.out" 2>&1
done
[ -f "$TMPD/data/localhost/accounts/alice.dat" ] || { say "prosodyctl register failed"; cat "$TMPD/prosodyctl.out"; exit 1; }

A=(--jid alice@localhost --password alicepass)
B=(--jid bob@localhost --password bobpass)

# --- 1. login with each mechanism ----------------------------------------------------------
for m in SCRAM-SHA-1 SCRAM-SHA-256 PLAIN; do
	slix "login-starttls-$m" "${A[@]}" --port "$P" --ca-file "$CA" --mechanism "$m" --scenario login
done
slix login-direct-SCRAM-SHA-256 "${A[@]}" --port "$PT" --tls direct --ca-file "$CA" --mechanism SCRAM-SHA-256 --scenario login
slix login-direct-insecure-auto "${B[@]}" --port "$PT" --tls direct --insecure --scenario login
slix_expect_fail login-wrong-password --jid alice@localhost --password wrong --port "$P" --ca-file "$CA" --mechanism SCRAM-SHA-256 --scenario login
slix_expect_fail login-untrusted-cert "${A[@]}" --port "$P" --ca-file /etc/ssl/certs/ca-certificates.crt --scenario login
# Prosody 0.12 has no SCRAM-SHA-512: the driver must refuse to fall back to another mechanism.
slix_expect_fail login-SCRAM-SHA-512-not-offered "${A[@]}" --port "$P" --ca-file "$CA" --mechanism SCRAM-SHA-512 --scenario login

# -PLUS: slixmpp 1.8.3 only does tls-unique, which needs TLS 1.2 (--tls-max 1.2). Prosody 0.12
# offers -PLUS only when LuaSec can give tls-unique (TLS <= 1.2).
for m in SCRAM-SHA-1-PLUS SCRAM-SHA-256-PLUS; do
	name="login-$m-tls12"
	timeout $((TIMEOUT + 10)) "${CLIENT[@]}" --server-host "$HOST" --timeout "$TIMEOUT" "${A[@]}" --port "$P" \
		--ca-file "$CA" --tls-max 1.2 --mechanism "$m" --scenario login >"$TMPD/$name.out" 2>&1 || true
	if grep -q '"result": "ok"' "$TMPD/$name.out"; then
		pass "$name"
	elif grep -q "offered \[[^]]*\]" "$TMPD/$name.out" && ! grep -q -- "-PLUS'" "$TMPD/$name.out"; then
		skip "$name" "this prosody/LuaSec does not offer -PLUS"
	else
		failc "$name" "$(grep -o '"reason": .*' "$TMPD/$name.out" | tail -1 || true)"
	fi
done
slix login-direct-SCRAM-SHA-256-PLUS-tls12 "${A[@]}" --port "$PT" --tls direct --ca-file "$CA" --tls-max 1.2 --mechanism SCRAM-SHA-256-PLUS --scenario login
# Under TLS 1.3 Prosody 0.12 offers no -PLUS, so a forced -PLUS must fail, not downgrade.
slix_expect_fail login-PLUS-tls13-not-offered "${A[@]}" --port "$P" --ca-file "$CA" --mechanism SCRAM-SHA-256-PLUS --scenario login

# --- 2. mutual subscription: bob accepts and subscribes back; alice subscribes -------------
bg sub-bob-accept "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario accept --from alice@localhost
if wait_line sub-bob-accept '"event": "ready"'; then
	slix sub-alice-subscribe "${A[@]}" --port "$P" --ca-file "$CA" --scenario subscribe --to bob@localhost --wait-mutual
	bg_done sub-bob-accept '"event": "mutual"'
else
	bg_kill sub-bob-accept; failc sub-bob-accept "not ready"
fi

# --- 3. presence: bob waits for alice's available presence ----------------------------------
bg presence-bob "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario presence --from alice@localhost
if wait_line presence-bob '"event": "ready"'; then
	slix presence-alice-login "${A[@]}" --port "$PT" --tls direct --ca-file "$CA" --scenario login
	bg_done presence-bob '"event": "peer_available"'
else
	bg_kill presence-bob; failc presence-bob "not ready"
fi

# --- 4. messages both ways -----------------------------------------------------------------
bg msg-bob-receive "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "hello bob <&> é"
if wait_line msg-bob-receive '"event": "ready"'; then
	slix msg-alice-send "${A[@]}" --port "$P" --ca-file "$CA" --scenario send --to bob@localhost --body "hello bob <&> é"
	bg_done msg-bob-receive
else
	bg_kill msg-bob-receive; failc msg-bob-receive "not ready"
fi
bg msg-alice-receive "${CLIENT[@]}" "${A[@]}" --port "$PT" --tls direct --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from bob@localhost --body "hello alice"
if wait_line msg-alice-receive '"event": "ready"'; then
	slix msg-bob-send "${B[@]}" --port "$PT" --tls direct --ca-file "$CA" --scenario send --to alice@localhost --body "hello alice"
	bg_done msg-alice-receive
else
	bg_kill msg-alice-receive; failc msg-alice-receive "not ready"
fi

# --- 5. offline delivery with XEP-0203 delay ----------------------------------------------
slix offline-alice-send "${A[@]}" --port "$P" --ca-file "$CA" --scenario send --to bob@localhost --body "while you were out"
slix offline-bob-login "${B[@]}" --port "$P" --ca-file "$CA" --scenario offline --from alice@localhost --body "while you were out"

# --- 6. carbons: alice/desk enables carbons; alice/phone sends to bob -----------------------
bg carbons-bob-receive "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "carbon copy me"
bg carbons-alice-desk "${CLIENT[@]}" --jid alice@localhost/desk --password alicepass --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario carbons --body "carbon copy me"
if wait_line carbons-bob-receive '"event": "ready"' && wait_line carbons-alice-desk '"event": "ready"'; then
	slix carbons-alice-phone-send --jid alice@localhost/phone --password alicepass --port "$P" --ca-file "$CA" --scenario send --to bob@localhost --body "carbon copy me"
	bg_done carbons-alice-desk '"event": "carbon_ok"'
	bg_done carbons-bob-receive
else
	bg_kill carbons-alice-desk; bg_kill carbons-bob-receive; failc carbons "clients not ready"
fi

# --- 7. go-sendxmpp: send and listen ---------------------------------------------------------
# go-sendxmpp 0.5.6 has no CA option; Go's crypto/x509 honours SSL_CERT_FILE. It verifies the
# JID's domain ('localhost') even with -j 127.0.0.1:port. -n would skip verification instead.
GSX_HOME="$TMPD/gsx-home"; mkdir -p "$GSX_HOME"
gsx() { HOME="$GSX_HOME" SSL_CERT_FILE="$CA" SSL_CERT_DIR=/nonexistent timeout "$TIMEOUT" go-sendxmpp "$@"; }

bg gsx-bob-receive "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "from go-sendxmpp starttls"
if wait_line gsx-bob-receive '"event": "ready"'; then
	if echo "from go-sendxmpp starttls" | gsx -u alice@localhost -p alicepass -j "$HOST:$P" bob@localhost >"$TMPD/gsx-send-starttls.out" 2>&1; then
		pass gsx-send-starttls
	else
		failc gsx-send-starttls "go-sendxmpp exit $?"
	fi
	bg_done gsx-bob-receive
else
	bg_kill gsx-bob-receive; failc gsx-bob-receive "not ready"
fi

bg gsx-bob-receive-tls "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "from go-sendxmpp direct tls"
if wait_line gsx-bob-receive-tls '"event": "ready"'; then
	if echo "from go-sendxmpp direct tls" | gsx -t -u alice@localhost -p alicepass -j "$HOST:$PT" bob@localhost >"$TMPD/gsx-send-direct.out" 2>&1; then
		pass gsx-send-direct
	else
		failc gsx-send-direct "go-sendxmpp exit $?"
	fi
	bg_done gsx-bob-receive-tls
else
	bg_kill gsx-bob-receive-tls; failc gsx-bob-receive-tls "not ready"
fi

# listen: go-sendxmpp -l prints "<RFC3339 time> <bare from>: <body>" per message, forever.
bg gsx-listen env HOME="$GSX_HOME" SSL_CERT_FILE="$CA" SSL_CERT_DIR=/nonexistent go-sendxmpp -l -u bob@localhost -p bobpass -j "$HOST:$P"
# It prints nothing when ready, so wait until bob's session is visible to alice as presence.
slix gsx-listen-online "${A[@]}" --port "$P" --ca-file "$CA" --scenario presence --from bob@localhost
slix gsx-listen-alice-send "${A[@]}" --port "$P" --ca-file "$CA" --scenario send --to bob@localhost --body "to go-sendxmpp listener"
if wait_line gsx-listen ' alice@localhost: to go-sendxmpp listener$' 15; then pass gsx-listen; else failc gsx-listen "message not printed"; fi
bg_kill gsx-listen

# --- 8. profanity under tmux -----------------------------------------------------------------
# Each run gets its own private HOME/tmux socket under $TMPD (removed with it).
prof() { local wd=$1; shift; mkdir -p "$TMPD/$wd"; PROFANITY_WORKDIR="$TMPD/$wd" "$PROFANITY" "$@"; }
bg prof-bob-receive "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "hi from profanity"
if wait_line prof-bob-receive '"event": "ready"'; then
	if prof prof-w1 login-and-send alice@localhost alicepass "$P" bob@localhost "hi from profanity" >"$TMPD/prof-alice-send.out" 2>&1; then
		pass prof-alice-send
	else
		failc prof-alice-send "profanity.sh failed"
	fi
	bg_done prof-bob-receive
else
	bg_kill prof-bob-receive; failc prof-bob-receive "not ready"
fi

bg prof-bob-receive-direct "${CLIENT[@]}" "${B[@]}" --port "$P" --ca-file "$CA" --timeout "$TIMEOUT" --scenario receive --from alice@localhost --body "direct tls profanity"
if wait_line prof-bob-receive-direct '"event": "ready"'; then
	if PROFANITY_TLS=direct prof prof-w2 login-and-send alice@localhost alicepass "$PT" bob@localhost "direct tls profanity" >"$TMPD/prof-alice-send-direct.out" 2>&1; then
		pass prof-alice-send-direct
	else
		failc prof-alice-send-direct "profanity.sh failed"
	fi
	bg_done prof-bob-receive-direct
else
	bg_kill prof-bob-receive-direct; failc prof-bob-receive-direct "not ready"
fi

mkdir -p "$TMPD/prof-w3"
bg prof-alice-receive env PROFANITY_CERT=trust PROFANITY_WORKDIR="$TMPD/prof-w3" "$PROFANITY" login-and-receive alice@localhost alicepass "$P" bob@localhost "hi profanity, bob here"
if wait_line prof-alice-receive '^READY$' 30; then
	slix prof-bob-send "${B[@]}" --port "$P" --ca-file "$CA" --scenario send --to alice@localhost --body "hi profanity, bob here"
	bg_done prof-alice-receive '^OK received'
else
	bg_kill prof-alice-receive; failc prof-alice-receive "not ready"
fi

if prof prof-w4 login alice@localhost wrongpass "$P" >"$TMPD/prof-wrong-password.out" 2>&1; then
	failc prof-wrong-password "profanity.sh reported success with a wrong password"
else
	pass prof-wrong-password
fi

# --- summary -----------------------------------------------------------------------------
grep -ho '"event": "auth", "mechanism": "[^"]*"' "$TMPD"/*.out | sort | uniq -c | sed 's/^/    /' || true
if [ "$FAILED" -gt 0 ]; then say "failed: ${FAILED_NAMES[*]}"; fi
echo "smoke: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
