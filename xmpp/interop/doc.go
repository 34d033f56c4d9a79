// Package interop tests Gatehouse against real third-party XMPP clients
// from Debian's packages: go-sendxmpp, a python3-slixmpp driver script
// (testdata/interop/slixmpp_client.py) and profanity driven under tmux.
// Each test starts a server in-process with xmpptest on 127.0.0.1:0 and
// runs the client binaries against it as separate processes.
//
// .ci/deps.sh installs the clients. A test whose client is missing skips,
// except with CI=true, where it fails. -short skips the package (outside CI).
//
// The package holds tests only; nothing may import it.
package interop
