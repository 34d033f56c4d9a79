// Package archive is Gatehouse's compliance archive: the company's own
// record of every stanza that crosses the border (and, if configured, of
// internal traffic), of session log-ons and log-offs, link up/down events,
// file transfers, policy actions and administrative actions.
//
// The archive is a SQLite file of its own (archive.db) in WAL mode. Its
// schema is a public, stable interface documented column by column in
// docs/archive.md: compliance officers read it with `sqlite3 -readonly`
// while the server runs. Migrations only ever add.
//
// Properties the package guarantees:
//
//   - Written before delivery. Append returns only after the row is
//     committed (fsync'd with synchronous=FULL). One writer goroutine
//     commits rows in batches (group commit): every caller waits for its
//     batch, and a batch costs one fsync however many rows it holds.
//   - Tamper evidence. Every row is chained: its hash is SHA-256 over the
//     previous row's hash and the row's canonical fields. Verify walks the
//     chain; the chain head is written periodically to an anchor file (and
//     the operational log) so that a truncated tail is detected too.
//   - Retention with legal holds. Prune removes old rows that no legal hold
//     covers and leaves a checkpoint (the hashes around each removed range)
//     so the remaining chain still verifies.
//
// Full-text search uses SQLite's FTS4, which mattn/go-sqlite3 compiles by
// default (FTS5 needs the sqlite_fts5 build tag; see docs/archive.md for
// why FTS4 was chosen). The writer fills the index after committing, in
// batches (schema version 2), so a crossing never waits for it; text
// searches through this package catch the index up first.
//
// Boundary also records the files a stanza offers (out-of-band URLs,
// stateless file sharing, Jingle and SI offers) as file_transfers rows in
// the stanza's own transaction.
//
// The package imports xmpp/router and xmpp/stanza for its Boundary (the
// recording router.Boundary) and nothing else of Gatehouse. It must not
// import policy, c2s, s2s, transports or xmpp/server.
package archive
