#!/usr/bin/env bash
# Side-by-side benchmark: Gatehouse, Prosody and ejabberd, one after another, on loopback
# ports of this machine, driven by gatehouse-bench (xmpp/loadgen). Called by `just bench`.
#
#   testdata/bench/run.sh                      # moderate size, all three servers
#   BENCH_SIZE=tiny testdata/bench/run.sh      # a quick smoke run of the whole flow
#   SERVERS="gatehouse prosody" testdata/bench/run.sh
#   KEEP=1 testdata/bench/run.sh               # keep the temp dir (configs, logs, JSON)
#   DOC=/tmp/perf.md testdata/bench/run.sh     # write the table somewhere else
#   BENCH_PORT_BASE=26000 ...                  # ports: base+0/1 gatehouse c2s, +2 its component
#                                              # listener, +100/101 prosody, +200 ejabberd,
#                                              # +300 epmd (default 26000: below Linux's
#                                              # ephemeral range 32768-60999, where a busy
#                                              # machine's outgoing connections can hold a port)
#
# For each server: private config from testdata/bench/*.in filled into a temp dir, private
# data dir, one ECDSA P-256 certificate for all, the same accounts (created with each
# server's admin tool), SCRAM-SHA-256 with 4096 iterations, STARTTLS required. Rosters are
# populated through the protocol (gatehouse-bench roster; Prosody's are written into its
# storage first and only verified that way), the server is restarted so memory is measured
# from a fresh process, then: idle sessions, presence fan-out, login storm, messaging, and
# for Gatehouse the boundary (bench component and testdata/bench/policy.yaml). Results
# (JSON) go to $TMPD/results/<server>/ and `gatehouse-bench report` writes the table into
# docs/performance.md. Every process is started by this script, tracked by PID
# and stopped on exit (trap). A missing server is reported and skipped.
set -euo pipefail

ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)} # BENCH_ROOT: run a copy of this script
HERE="$ROOT/testdata/bench"
DOC=${DOC:-$ROOT/docs/performance.md}
SERVERS=${SERVERS:-gatehouse prosody ejabberd}
BASE=${BENCH_PORT_BASE:-26000}
GH_PORT=$BASE GH_TLS_PORT=$((BASE + 1)) GH_COMP_PORT=$((BASE + 2))
PR_PORT=$((BASE + 100)) PR_TLS_PORT=$((BASE + 101))
EJ_PORT=$((BASE + 200)) EPMD_PORT=$((BASE + 300))

case "${BENCH_SIZE:-moderate}" in
tiny)
	LOGIN_N=200 LOGIN_C=10 LOGIN_ACCOUNTS=10
	PAIRS=5 RATES=500,1000,2000 STEP=2s
	IDLE_USERS=60 IDLE_DEGREE=20
	FAN_USERS=60 FAN_DEGREE=50
	SETTLE=2s ;;
moderate)
	LOGIN_N=3000 LOGIN_C=50 LOGIN_ACCOUNTS=50
	PAIRS=50 RATES=1000,2000,5000,10000,15000,20000,30000,40000,60000,80000 STEP=5s
	IDLE_USERS=1000 IDLE_DEGREE=20
	FAN_USERS=200 FAN_DEGREE=50
	SETTLE=5s ;;
*) echo "bench: BENCH_SIZE must be tiny or moderate" >&2; exit 2 ;;
esac
PASSWORD="bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
COMP_SECRET="bench-component-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# BENCH_NICE (default -10 when root): the script, and so every server and load generator it
# starts, runs at this nice level, the same for all three servers, so that other work on the
# machine (builds, tests) takes less of the 2 cores from the measurement. 0 leaves it alone.
NICE=${BENCH_NICE:-$([ "$(id -u)" -eq 0 ] && echo -10 || echo 0)}
NICED="nice 0 (BENCH_NICE=0)"
if [ "$NICE" != 0 ]; then
	if renice -n "$NICE" -p $$ >/dev/null 2>&1; then NICED="nice $NICE"; else NICED="nice 0 (renice to $NICE refused)"; fi
fi

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
RESULTS=${BENCH_RESULTS:-$TMPD/results} # BENCH_RESULTS: reuse a results dir (re-run one server)
BIN="$TMPD/bin"
mkdir -p "$RESULTS" "$BIN" "$TMPD/certs"
SERVER_PID=""
EPMD_PID=""
BENCH_PID=""
CUR=""

say() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*"; }

# stop_pid PID: TERM, wait up to 15 s, then KILL.
stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	stop_pid "$BENCH_PID"; BENCH_PID=""
	stop_pid "$SERVER_PID"; SERVER_PID=""
	stop_pid "$EPMD_PID"; EPMD_PID=""
	if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		say "kept $TMPD (configs, server logs, results/*.json)"
	else
		rm -rf "$TMPD"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# busy_pct: CPU busy (all cores, %) over 3 s, read from /proc/stat.
busy_pct() {
	local a b
	a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
	local t0=0 t1=0 i
	for i in 1 2 3 4 5 6 7 8; do t0=$((t0 + a[i])); t1=$((t1 + b[i])); done
	local idle=$(((b[4] + b[5]) - (a[4] + a[5]))) tot=$((t1 - t0))
	[ "$tot" -gt 0 ] || { echo 0; return; }
	echo $((100 * (tot - idle) / tot))
}

# wait_quiet: the benchmark shares 2 cores with everything else on the machine, so wait (up
# to BENCH_QUIET_WAIT seconds: 60 before a server, BENCH_QUIET_WAIT_SCENARIO=10 before each
# measured scenario) until other work uses < 15 % of the CPU.
wait_quiet() {
	local deadline=$(($(date +%s) + ${BENCH_QUIET_WAIT:-60})) b
	while :; do
		b=$(busy_pct)
		if [ "$b" -lt 15 ]; then QUIET="machine ${b}% busy before the run"; return 0; fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			QUIET="machine ${b}% busy before the run (did not get quiet): figures are skewed"
			say "WARNING: $QUIET"; return 0
		fi
		say "machine ${b}% busy with other work; waiting for it to quieten"
		sleep 10
	done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT SECONDS
	local deadline=$(($(date +%s) + $2))
	until port_open "$1"; do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then say "$CUR exited during start-up"; return 1; fi
		[ "$(date +%s)" -lt "$deadline" ] || { say "$CUR did not listen on $1 within $2 s"; return 1; }
		sleep 0.1
	done
}

fill() { # TEMPLATE OUT: substitute the placeholders
	sed -e "s#@DIR@#$SDIR#g" -e "s#@PORT@#$PORT#g" -e "s#@TLSPORT@#${TLS_PORT:-0}#g" \
		-e "s#@COMPPORT@#${COMP_PORT:-0}#g" -e "s#@PLAIN@#false#g" -e "s#@STARTTLS_REQUIRED@#true#g" "$1" >"$2"
}

# users: every account name, one a line.
users() {
	local i
	for i in $(seq 0 $((LOGIN_ACCOUNTS - 1))); do echo "login$i"; done
	for i in $(seq 0 $((2 * PAIRS - 1))); do echo "msg$i"; done
	for i in $(seq 0 $((IDLE_USERS - 1))); do echo "idle$i"; done
	for i in $(seq 0 $((FAN_USERS - 1))); do echo "fan$i"; done
}

# --- build and shared material -----------------------------------------------------------
for p in "$GH_PORT" "$GH_TLS_PORT" "$GH_COMP_PORT" "$PR_PORT" "$PR_TLS_PORT" "$EJ_PORT" "$EPMD_PORT"; do
	if port_open "$p"; then say "port $p on 127.0.0.1 is in use (set BENCH_PORT_BASE)"; exit 1; fi
done
# BENCH_GATEHOUSE_REV=<commit> builds the server from that commit (git archive, read-only)
# instead of the working tree; the load generator always comes from the working tree.
GH_REV=${BENCH_GATEHOUSE_REV:-}
say "building gatehouse${GH_REV:+ at $GH_REV} and gatehouse-bench"
if [ -n "$GH_REV" ]; then
	mkdir -p "$TMPD/src"
	git -C "$ROOT" archive "$GH_REV" | tar -x -C "$TMPD/src"
	(cd "$TMPD/src" && go build -o "$BIN/gatehouse" ./cmd/gatehouse) || { say "gatehouse at $GH_REV does not build"; exit 1; }
	GH_REV="$GH_REV ($(git -C "$ROOT" rev-parse --short "$GH_REV"))"
else
	(cd "$ROOT" && go build -o "$BIN/gatehouse" ./cmd/gatehouse) || { say "the working tree's gatehouse does not build (try BENCH_GATEHOUSE_REV=HEAD)"; exit 1; }
	GH_REV="working tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] || echo ' with local changes')"
fi
(cd "$ROOT" && go build -o "$BIN/gatehouse-bench" ./cmd/gatehouse-bench) || { say "gatehouse-bench does not build"; exit 1; }
GB="$BIN/gatehouse-bench"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 2 \
	-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$TMPD/certs/localhost.key" -out "$TMPD/certs/localhost.crt" >/dev/null 2>&1
chmod 0644 "$TMPD/certs/localhost.key" # private temp dir; servers may run as other users
printf '%s\n' "$PASSWORD" >"$TMPD/password"
users >"$TMPD/users"
say "$(wc -l <"$TMPD/users") accounts per server; size ${BENCH_SIZE:-moderate}; results in $RESULTS"

COMMON=(--domain localhost --ca "$TMPD/certs/localhost.crt" --password-file "$TMPD/password" --mech SCRAM-SHA-256 --tls starttls)

# --- per-server start/stop/accounts --------------------------------------------------------
gatehouse_setup() {
	fill "$HERE/gatehouse.yaml.in" "$SDIR/gatehouse.yaml"
	cp "$HERE/policy.yaml" "$SDIR/policy.yaml"
	printf '%s\n' "$COMP_SECRET" >"$SDIR/component.secret"
	chmod 0600 "$SDIR/component.secret"
	mkdir -p "$SDIR/data"
	# One `gatehouse user add` per account (the CLI has no bulk import): the first alone (it
	# creates the database), the rest two at a time (the store serialises writers with a busy
	# timeout); a failing one fails the run (xargs exits non-zero).
	local first
	first=$(head -1 "$TMPD/users")
	"$BIN/gatehouse" user add "$first" --password-file "$TMPD/password" -c "$SDIR/gatehouse.yaml" >/dev/null
	tail -n +2 "$TMPD/users" | xargs -P 2 -I{} "$BIN/gatehouse" user add {} --password-file "$TMPD/password" \
		-c "$SDIR/gatehouse.yaml" >/dev/null
}
gatehouse_start() {
	"$BIN/gatehouse" serve -c "$SDIR/gatehouse.yaml" >>"$SDIR/stdout" 2>&1 &
	SERVER_PID=$!
	wait_port "$PORT" 30
}
gatehouse_version() { "$BIN/gatehouse" version; }

prosody_setup() {
	fill "$HERE/prosody.cfg.lua.in" "$SDIR/prosody.cfg.lua"
	mkdir -p "$SDIR/data"
}
prosody_start() {
	prosody -F --config "$SDIR/prosody.cfg.lua" >>"$SDIR/stdout" 2>&1 &
	SERVER_PID=$!
	wait_port "$PORT" 30
}
prosody_accounts() {
	# prosodyctl with the private config: one shell session creates them all (the same
	# usermanager call as `prosodyctl register`, which costs 0.1 s of start-up per user).
	awk -v pw="$PASSWORD" '{ printf "user:create(\"%s@localhost\", \"%s\")\n", $1, pw }' "$TMPD/users" |
		timeout 300 prosodyctl --config "$SDIR/prosody.cfg.lua" shell --quiet >"$SDIR/accounts.out" 2>&1
	local n
	n=$(find "$SDIR/data/localhost/accounts" -name '*.dat' 2>/dev/null | wc -l)
	[ "$n" -eq "$(wc -l <"$TMPD/users")" ] || { say "prosody: $n accounts created"; tail -5 "$SDIR/accounts.out"; return 1; }
}
# prosody_rosters: the bench rosters written straight into Prosody's internal storage (the
# same items the protocol path makes; `gatehouse-bench roster` then verifies each one over
# the protocol). Through the protocol Prosody takes ~7 min for them, rewriting the whole
# roster file on every change. BENCH_PROSODY_ROSTERS=protocol uses the protocol path.
prosody_rosters() {
	[ "${BENCH_PROSODY_ROSTERS:-storage}" = storage ] || return 0
	"$GB" prosody-rosters --dir "$SDIR/data/localhost/roster" --prefix idle --users "$IDLE_USERS" --degree "$IDLE_DEGREE"
	"$GB" prosody-rosters --dir "$SDIR/data/localhost/roster" --prefix fan --users "$FAN_USERS" --degree "$FAN_DEGREE"
}
prosody_version() { echo "Prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null) (Debian), $( (lua5.4 -v 2>/dev/null || lua -v 2>/dev/null) | head -1 | cut -d' ' -f1-2)"; }

# ejabberd runs as the current user (root or not) straight from erl, as ejabberdctl would
# but without its switch to the 'ejabberd' user: private node name, cookie, spool, logs and
# an epmd of our own on a private port (no system epmd left behind).
EJ_LIBS=$(dirname "$(ls -d /usr/lib/*/ejabberd-[0-9]* 2>/dev/null | head -1)" 2>/dev/null || true)
[ "$EJ_LIBS" != . ] || EJ_LIBS=""
EJ_NODE="ghbench$$@localhost"
EJ_COOKIE="c$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ej_env() {
	export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 ERL_LIBS=$EJ_LIBS
	export EJABBERD_CONFIG_PATH="$SDIR/ejabberd.yml" EJABBERD_LOG_PATH="$SDIR/log/ejabberd.log"
	export ERL_CRASH_DUMP_BYTES=0 HOME="$SDIR"
}
# ejctl ARGS...: ejabberdctl's own call (ejabberd_ctl on a hidden node) with our node/cookie.
ejctl() {
	(ej_env; cd "$SDIR" && timeout 120 erl -sname "ctl$RANDOM$$@localhost" -setcookie "$EJ_COOKIE" -hidden -noinput \
		-kernel inet_dist_use_interface '{127,0,0,1}' -s ejabberd_ctl -extra "$EJ_NODE" "$@")
}
ejabberd_setup() {
	fill "$HERE/ejabberd.yml.in" "$SDIR/ejabberd.yml"
	mkdir -p "$SDIR/mnesia" "$SDIR/log"
	if [ -z "$EPMD_PID" ]; then
		epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$SDIR/epmd.out" 2>&1 &
		EPMD_PID=$!
		local deadline=$(($(date +%s) + 10))
		until port_open "$EPMD_PORT"; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.1; done
	fi
}
ejabberd_start() {
	(ej_env; cd "$SDIR" && exec erl -sname "$EJ_NODE" -setcookie "$EJ_COOKIE" -noinput +K true +P 250000 \
		-kernel inet_dist_use_interface '{127,0,0,1}' -mnesia dir "\"$SDIR/mnesia\"" -s ejabberd) >>"$SDIR/stdout" 2>&1 &
	SERVER_PID=$!
	wait_port "$PORT" 60
	for _ in $(seq 1 30); do ejctl status >/dev/null 2>&1 && return 0; sleep 1; done
	say "ejabberd: node not answering"; return 1
}
ejabberd_accounts() {
	# ejabberdctl register, in bulk: ejabberd_admin:register/3 (what `ejabberdctl register`
	# calls) over RPC from one hidden node instead of one Erlang VM per account.
	(ej_env; cd "$SDIR" && timeout 300 erl -sname "reg$$@localhost" -setcookie "$EJ_COOKIE" -hidden -noinput \
		-kernel inet_dist_use_interface '{127,0,0,1}' -eval "
		{ok, Bin} = file:read_file(\"$TMPD/users\"),
		Users = [U || U <- binary:split(Bin, <<\"\n\">>, [global]), U =/= <<>>],
		R = [rpc:call('$EJ_NODE', ejabberd_admin, register, [U, <<\"localhost\">>, <<\"$PASSWORD\">>]) || U <- Users],
		Bad = [X || X <- R, element(1, X) =/= ok],
		io:format(\"registered ~p, failed ~p~n\", [length(R) - length(Bad), lists:sublist(Bad, 3)]),
		halt(case Bad of [] -> 0; _ -> 1 end).") >"$SDIR/accounts.out" 2>&1 || { cat "$SDIR/accounts.out"; return 1; }
	ejctl register benchcheck localhost "$PASSWORD" >>"$SDIR/accounts.out" 2>&1 # the plain ejabberdctl path works too
}
ejabberd_version() { echo "ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null) (Debian), Erlang/OTP $(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().')"; }

# bench NAME SCENARIO ARGS...: one gatehouse-bench run, JSON into results; a failing
# scenario is recorded (the JSON has the error) and the run goes on.
# The client runs in the background and is waited for, so that a signal reaches the trap at
# once and cleanup can stop it by PID too; its own --timeout bounds it.
bench() {
	local scen=$1 out; shift
	if [ "$scen" != roster ]; then
		BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT_SCENARIO:-10} wait_quiet
		echo "$1 ${QUIET%% busy*}" >>"$RESULTS/$CUR/QUIET"
	fi
	say "$CUR: $scen $*"
	out=$(mktemp "$SDIR/out.XXXXXX")
	"$GB" "$scen" "${COMMON[@]}" --timeout 20m --addr "127.0.0.1:$PORT" --server "$CUR" \
		--server-pid "$SERVER_PID" --json "$RESULTS/$CUR/$1.json" "${@:2}" >"$out" 2>&1 &
	BENCH_PID=$!
	wait "$BENCH_PID" || true
	BENCH_PID=""
	cat "$out" | tee -a "$SDIR/bench.out"
	rm -f "$out"
}

# --- the runs ----------------------------------------------------------------------------
for CUR in $SERVERS; do
	SDIR="$TMPD/$CUR"
	mkdir -p "$SDIR" "$RESULTS/$CUR"
	ln -sfn "$TMPD/certs" "$SDIR/certs"
	case $CUR in
	gatehouse) PORT=$GH_PORT TLS_PORT=$GH_TLS_PORT COMP_PORT=$GH_COMP_PORT; need=() ;;
	prosody) PORT=$PR_PORT TLS_PORT=$PR_TLS_PORT; need=(prosody prosodyctl) ;;
	ejabberd) PORT=$EJ_PORT TLS_PORT=""; need=(erl epmd); [ -n "$EJ_LIBS" ] || need+=(ejabberd-package) ;;
	*) say "unknown server $CUR"; exit 2 ;;
	esac
	missing=""
	for t in "${need[@]}"; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
	if [ -n "$missing" ]; then
		say "$CUR is not installed (missing:$missing): skipped. Install with: apt-get install $CUR"
		rm -f "$RESULTS/$CUR"/*.json
		echo "not installed" >"$RESULTS/$CUR/SKIPPED"
		continue
	fi
	rm -f "$RESULTS/$CUR"/*.json "$RESULTS/$CUR/SKIPPED" "$RESULTS/$CUR/QUIET"
	"${CUR}_version" >"$RESULTS/$CUR/VERSION"
	wait_quiet
	echo "$(date -u +%H:%M) UTC, $QUIET" >"$RESULTS/$CUR/STARTED"
	say "== $CUR on 127.0.0.1:$PORT"
	"${CUR}_setup"
	"${CUR}_start" || { echo "did not start" >"$RESULTS/$CUR/SKIPPED"; stop_pid "$SERVER_PID"; SERVER_PID=""; continue; }
	if declare -F "${CUR}_accounts" >/dev/null; then "${CUR}_accounts"; fi
	if declare -F "${CUR}_rosters" >/dev/null; then "${CUR}_rosters"; fi
	bench roster roster-idle --prefix idle --users "$IDLE_USERS" --degree "$IDLE_DEGREE"
	bench roster roster-fan --prefix fan --users "$FAN_USERS" --degree "$FAN_DEGREE"
	# Fresh process for the memory figure.
	stop_pid "$SERVER_PID"; SERVER_PID=""
	"${CUR}_start"
	sleep 3
	bench idle idle --prefix idle --users "$IDLE_USERS" --degree "$IDLE_DEGREE" --settle "$SETTLE"
	sleep 2
	bench fanout fanout --prefix fan --users "$FAN_USERS" --degree "$FAN_DEGREE"
	sleep 2
	bench login login --prefix login --accounts "$LOGIN_ACCOUNTS" -n "$LOGIN_N" -c "$LOGIN_C"
	sleep 3
	bench messaging messaging --prefix msg --pairs "$PAIRS" --rates "$RATES" --step "$STEP"
	if [ "$CUR" = gatehouse ]; then
		# The same users, pairs, rates and steps as messaging, each message crossing the
		# border to or from the bench component, through the bench policy.
		bench boundary boundary --prefix msg --pairs "$PAIRS" --rates "$RATES" --step "$STEP" \
			--component bench.localhost --component-addr "127.0.0.1:$COMP_PORT" --secret-file "$SDIR/component.secret"
	fi
	stop_pid "$SERVER_PID"; SERVER_PID=""
	if [ "$CUR" = ejabberd ]; then stop_pid "$EPMD_PID"; EPMD_PID=""; fi
	say "== $CUR done"
done

META=()
for s in gatehouse prosody ejabberd; do
	if [ -f "$RESULTS/$s/VERSION" ]; then
		v=$(cat "$RESULTS/$s/VERSION")
		[ "$s" != gatehouse ] || v="$v, built from the $GH_REV"
		q=$(sed 's/machine //' "$RESULTS/$s/QUIET" 2>/dev/null | paste -sd',' - | sed 's/,/, /g')
		META+=(--meta "$s=$v; run started $(cat "$RESULTS/$s/STARTED" 2>/dev/null); CPU busy with other work just before each scenario: ${q:-n/a}")
	fi
done
negotiated=""
for s in gatehouse prosody ejabberd; do
	n=$(grep -ho '"negotiated": "[^"]*"' "$RESULTS/$s/login.json" 2>/dev/null | sed 's/"negotiated": //; s/"//g' || true)
	[ -z "$n" ] || negotiated="$negotiated $s: $n;"
done
"$GB" report --results "$RESULTS" --doc "$DOC" "${META[@]}" \
	--meta "Go=$(go version | cut -d' ' -f3)" \
	--meta "OpenSSL=$(openssl version | cut -d' ' -f1-2)" \
	--meta "TLS and SASL=STARTTLS required, one ECDSA P-256 self-signed certificate for all servers, SCRAM-SHA-256 with credentials stored salted at 4096 iterations; TLS key exchange X25519 (the client offers no ML-KEM hybrid, which only Gatehouse's Go TLS would accept); negotiated:${negotiated:- n/a}" \
	--meta "Load generator=gatehouse-bench on the same machine, cached SCRAM client (PBKDF2 once per account), no TLS session resumption" \
	--meta "Sizes=login storm $LOGIN_N logins at concurrency $LOGIN_C over $LOGIN_ACCOUNTS accounts; messaging $PAIRS pairs, 100-byte bodies, steps $RATES msg/s of $STEP each after a 2 s warm-up; idle $IDLE_USERS sessions with $IDLE_DEGREE-contact rosters, settle $SETTLE; fan-out $FAN_USERS users with $FAN_DEGREE-contact rosters" \
	--meta "Run=testdata/bench/run.sh (BENCH_SIZE=${BENCH_SIZE:-moderate}), servers one after another; 2 cores shared by server and load generator, both at $NICED; before each server and scenario the run waited (up to ${BENCH_QUIET_WAIT:-60} s / ${BENCH_QUIET_WAIT_SCENARIO:-10} s) for other work to use < 15 % of the CPU and recorded how busy the machine was (see above): where that is high, other work (at nice 0) still competed for the cores and the figures are skewed"
say "done; table in $DOC"
