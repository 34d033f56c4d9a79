// Package interop tests Gatehouse against real third-party XMPP clients
// from Debian's packages: go-sendxmpp, python3-slixmpp and python3-aioxmpp
// driver scripts (testdata/interop/*.py) and profanity driven under tmux.
// Each test starts a server in-process with xmpptest on 127.0.0.1:0 and
// runs the client binaries against it as separate processes;
// TestProfanitySession instead builds and runs the `gatehouse` binary with
// its default configuration (as `just run` does), listeners moved to free
// ports.
//
// TestAdvertisedFeaturesAnswer needs no third-party client: it probes every
// feature the server, an account and the services advertise with a real
// request, and checks each against docs/xeps.md.
//
// .ci/deps.sh installs the clients. A test whose client is missing skips,
// except with CI=true, where it fails. -short skips the client tests
// (outside CI).
//
// The package holds tests only; nothing may import it.
package interop
