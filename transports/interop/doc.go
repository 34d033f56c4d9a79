// Package interop tests Gatehouse's transport side against real
// third-party software from Debian's packages: biboumi (an XMPP–IRC
// gateway speaking XEP-0114) connected to an in-process Gatehouse server,
// and ngircd as the IRC network, with an IRC partner speaking raw IRC over
// TCP from the test.
//
// Every process listens on loopback only, is started and stopped by its
// PID, and every wait is bounded. .ci/deps.sh installs the packages; a test
// whose program is missing skips, except with CI=true, where it fails.
// -short skips the package outside CI.
//
// The package holds tests only; nothing may import it.
package interop
