// Package policy is the company's boundary policy: which local users may
// talk to whom outside, what they may say (keyword lexicons and patterns),
// which files may cross (size, type, virus scan through clamd), and the
// notices that a conversation is recorded.
//
// A policy file (docs/policy.md) compiles into an immutable *Policy. The
// Gate implements router.Boundary: for every crossing it evaluates the
// policy in force in a fixed order of stages — access, content, files,
// scan, disclaimer — where the first deny wins, and returns a
// router.Decision naming the rules that acted and the policy version, which
// the compliance archive records. Reloading swaps the whole policy
// atomically or not at all.
//
// It imports xmpp/router and xmpp/stanza only; it must not import storage,
// the server, c2s, s2s, transports or the archive: groups and managers come
// through the Directory interface, notices leave through a Forwarder.
package policy
