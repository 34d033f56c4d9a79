// Package loadgen is Gatehouse's XMPP load generator: it logs many clients
// in to any XMPP server (Gatehouse, Prosody, ejabberd) over TCP with
// STARTTLS or plain, SCRAM-SHA-1/256 and resource binding, and runs the
// benchmark scenarios of docs/performance.md: login storm, stepped-rate
// messaging, idle sessions with rosters, presence fan-out, and the
// boundary, for which it also connects as an XEP-0114 component.
//
// Limits it keeps by construction: targets must be loopback addresses
// (ResolveLoopback refuses anything else before a socket is opened), every
// scenario is bounded in count and in time, and every scenario reports
// this process's CPU (getrusage) next to the server's (from /proc/PID) so
// the tool never silently becomes the bottleneck. It speaks raw XML and
// splits the stream with a byte scanner instead of a DOM, and caches SCRAM
// salted passwords as real clients do, so its CPU per stanza and per login
// stays well below a server's.
//
// It imports no server package: it talks to servers only over sockets.
package loadgen
