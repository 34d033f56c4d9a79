-- Prosody configuration for the interop driver smoke test (testdata/interop/prosody-smoke.sh).
-- Everything lives under $PROSODY_TEST_DIR (a temp dir made by the smoke script):
-- pid file, data, log and the self-signed certificate. Listens only on 127.0.0.1.
-- Ports: c2s STARTTLS $PROSODY_C2S_PORT (default 15222), c2s direct TLS $PROSODY_C2S_TLS_PORT (15223).
-- Tested with Debian's prosody 0.12.3.

local dir = ENV_PROSODY_TEST_DIR or error("PROSODY_TEST_DIR is not set")
local c2s_port = tonumber(ENV_PROSODY_C2S_PORT or "15222")
local c2s_tls_port = tonumber(ENV_PROSODY_C2S_TLS_PORT or "15223")

-- The smoke test runs as root in CI; Prosody refuses root unless told otherwise
-- (and prosodyctl would otherwise switch to the 'prosody' user, which cannot write the temp dir).
run_as_root = true

pidfile = dir .. "/prosody.pid"
data_path = dir .. "/data"
certificates = dir .. "/certs"

log = {
	{ levels = { min = "debug" }, to = "file", filename = dir .. "/prosody.log" };
}

-- Loopback only; no s2s, no http, no components.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { c2s_port }
c2s_direct_tls_ports = { c2s_tls_port }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = {}
s2s_interfaces = {}
http_ports = {}
https_ports = {}
component_ports = {}
admin_socket = dir .. "/prosody.sock"

modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "carbons"; "offline";
	"ping"; "presence"; "blocklist"; "vcard"; "posix";
}
modules_disabled = { "s2s"; "s2s_auth_certs"; "dialback" }

c2s_require_encryption = true
allow_registration = false

-- internal_plain keeps the password, so Prosody can do SCRAM-SHA-1 and SCRAM-SHA-256
-- (internal_hashed stores one hash only, chosen by password_hash). PLAIN is offered over TLS.
authentication = "internal_plain"
storage = "internal"

ssl = {
	certificate = dir .. "/certs/localhost.crt";
	key = dir .. "/certs/localhost.key";
}

VirtualHost "localhost"
	ssl = {
		certificate = dir .. "/certs/localhost.crt";
		key = dir .. "/certs/localhost.key";
	}
