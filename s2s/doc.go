// Package s2s is Gatehouse's federation with other XMPP servers
// (RFC 6120 server-to-server streams): the inbound listeners (STARTTLS on
// 5269, direct TLS on 5270 per XEP-0368), an outbound pool with one link
// per (local, remote) domain pair and a bounded queue while a link comes
// up, DNS SRV resolution with static overrides, certificate checks (PKIX
// and RFC 6125 identities), SASL EXTERNAL (XEP-0178), Server Dialback
// (XEP-0220, keys per XEP-0185), bidirectional streams (XEP-0288) and the
// federation policy (open, allowlist, denylist).
//
// Every stanza a peer sends enters the router with the remote zone and the
// domain that peer authenticated on that stream as its source, so the
// router's boundary sees every crossing; the Service is the router's
// remote-zone Deliverer and only enqueues.
//
// Lock order: Service.mu, then link.mu, then inStream.mu; no lock is held
// while writing to the network or calling the router.
//
// It must not import c2s, transports, policy, hook or any feature module:
// it reaches the rest of the server only through the router.
package s2s
