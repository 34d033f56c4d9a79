package irc

import "crypto/tls"

// newTLSConfig verifies the IRC server's certificate against the system
// roots for host.
func newTLSConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}
