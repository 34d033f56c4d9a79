// Package interop tests Gatehouse federation against real XMPP servers
// from Debian's packages: Prosody and ejabberd, each started by the test
// on loopback with its own domain, data directory and certificates from
// a test CA the test creates. The peers find Gatehouse through a small DNS
// server the test runs on 127.0.0.1 (SRV and A records for the test
// domains only): Prosody through libunbound's forwarder option, ejabberd
// through an Erlang inetrc file. Gatehouse reaches them through the same
// server in the dialback scenario and with static routes otherwise.
//
// .ci/deps.sh installs the servers. A test whose server is missing skips,
// except with CI=true, where it fails. -short skips the package (outside
// CI).
//
// The package holds tests only; nothing may import it.
package interop
