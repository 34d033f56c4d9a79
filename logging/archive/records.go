package archive

import (
	"fmt"
	"time"
)

// RecordType names a kind of archive record; it is records.record_type.
type RecordType string

// Record types.
const (
	TypeStanza     RecordType = "stanza"
	TypeSession    RecordType = "session"
	TypeLink       RecordType = "link"
	TypeFile       RecordType = "file"
	TypePolicy     RecordType = "policy"
	TypeAdmin      RecordType = "admin"
	TypeCheckpoint RecordType = "checkpoint"
)

// Direction says which way a stanza or file went relative to the company.
type Direction string

// Directions.
const (
	In       Direction = "in"       // from outside to a local account
	Out      Direction = "out"      // from the local side to outside
	Internal Direction = "internal" // between local accounts (scope option)
)

// Zone names the zone of the outside party ("local" for internal traffic).
// The values are router.Zone's names.
type Zone string

// Zones.
const (
	ZoneLocal     Zone = "local"
	ZoneRemote    Zone = "remote"
	ZoneTransport Zone = "transport"
)

// Verdict is what the boundary decided.
type Verdict string

// Verdicts.
const (
	Allow Verdict = "allow"
	Deny  Verdict = "deny"
	// Error: the policy itself failed; the crossing was refused.
	Error Verdict = "error"
)

// Session and link events.
const (
	EventLogon  = "logon"
	EventLogoff = "logoff"
	EventUp     = "up"
	EventDown   = "down"
)

// Record is one archive record: *Stanza, *SessionEvent, *LinkEvent,
// *FileTransfer, *PolicyAction or *AdminAction. Checkpoints are written by
// Prune only.
type Record interface {
	recordType() RecordType
	// check reports a record that the schema would refuse, before it can
	// fail a whole batch.
	check() error
	// values returns the detail columns after ts_ms and ts_utc, in the
	// table's canonical order.
	values(dst []any) []any
}

// Stanza records a stanza that crossed the border (or internal traffic).
// Empty strings are stored as NULL in nullable columns; zero ConnID and
// RouteSeq too.
type Stanza struct {
	Direction Direction `json:"direction"`
	Zone      Zone      `json:"zone"`
	// Network is the outside domain: the s2s peer's domain or the
	// transport's domain; for internal traffic the recipient's domain.
	Network string `json:"network"`
	// Account is the local party's bare JID (the sender for Out and
	// Internal, the recipient for In); LocalJID its full JID as addressed.
	Account  string `json:"account"`
	LocalJID string `json:"local_jid"`
	// Peer is the other party's bare JID, PeerJID as addressed.
	Peer    string `json:"peer"`
	PeerJID string `json:"peer_jid"`
	// LegacyID is the address on the legacy network behind a transport
	// JID (the XEP-0106-unescaped localpart), transport zone only.
	LegacyID string `json:"legacy_id,omitempty"`
	Kind     string `json:"kind"` // message, presence, iq
	// Type is the stanza's type with the RFC 6120 defaults made explicit:
	// "normal" for a message and "available" for a presence without one.
	Type     string `json:"type"`
	StanzaID string `json:"stanza_id,omitempty"` // the id attribute
	OriginID string `json:"origin_id,omitempty"` // XEP-0359 origin-id
	Thread   string `json:"thread,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Body     string `json:"body,omitempty"`

	Verdict       Verdict `json:"verdict"`
	Rule          string  `json:"rule,omitempty"`
	PolicyVersion string  `json:"policy_version,omitempty"`
	DenyCondition string  `json:"deny_condition,omitempty"`
	DenyText      string  `json:"deny_text,omitempty"`

	// ConnID is the local session's (Out) or the link's (In) connection
	// id, as in session_events and link_events.
	ConnID uint64 `json:"conn_id,omitempty"`
	// RouteSeq is the router's envelope sequence number, which the
	// operational log uses too; it restarts with the server.
	RouteSeq uint64 `json:"route_seq,omitempty"`
	// Raw is the stanza as it reached the boundary, serialized in the
	// jabber:client namespace. RawDelivered is set only when the policy
	// changed it (redaction, disclaimer): what was actually delivered.
	Raw          string `json:"raw"`
	RawDelivered string `json:"raw_delivered,omitempty"`
}

func (*Stanza) recordType() RecordType { return TypeStanza }

func (r *Stanza) check() error {
	if err := checkDirection(r.Direction); err != nil {
		return err
	}
	if err := checkZone(r.Zone, true); err != nil {
		return err
	}
	switch r.Kind {
	case "message", "presence", "iq":
	default:
		return fmt.Errorf("%w: stanza kind %q", ErrInvalid, r.Kind)
	}
	if r.Type == "" {
		return fmt.Errorf("%w: stanza type is empty", ErrInvalid)
	}
	if r.Raw == "" {
		return fmt.Errorf("%w: stanza raw XML is empty", ErrInvalid)
	}
	return checkVerdict(r.Verdict)
}

func (r *Stanza) values(v []any) []any {
	return append(v, string(r.Direction), string(r.Zone), r.Network, r.Account, r.LocalJID,
		r.Peer, r.PeerJID, null(r.LegacyID), r.Kind, r.Type, null(r.StanzaID), null(r.OriginID),
		null(r.Thread), null(r.Subject), null(r.Body),
		string(r.Verdict), null(r.Rule), null(r.PolicyVersion), null(r.DenyCondition), null(r.DenyText),
		nullU(r.ConnID), nullU(r.RouteSeq), r.Raw, null(r.RawDelivered))
}

// SessionEvent records a client session's log-on (resource bound) or
// log-off (session ended).
type SessionEvent struct {
	Event         string        `json:"event"` // EventLogon or EventLogoff
	Account       string        `json:"account"`
	Resource      string        `json:"resource"`
	ConnID        uint64        `json:"conn_id"`
	ClientAddr    string        `json:"client_addr"`
	TLSVersion    string        `json:"tls_version"`
	SASLMechanism string        `json:"sasl_mechanism"`
	Started       time.Time     `json:"started"`
	Duration      time.Duration `json:"duration,omitempty"` // log-off only
}

func (*SessionEvent) recordType() RecordType { return TypeSession }

func (r *SessionEvent) check() error {
	if r.Event != EventLogon && r.Event != EventLogoff {
		return fmt.Errorf("%w: session event %q", ErrInvalid, r.Event)
	}
	return nil
}

func (r *SessionEvent) values(v []any) []any {
	var dur any
	if r.Event == EventLogoff {
		dur = r.Duration.Milliseconds()
	}
	return append(v, r.Event, r.Account, r.Resource, int64(r.ConnID), r.ClientAddr, r.TLSVersion,
		r.SASLMechanism, r.Started.UnixMilli(), dur)
}

// LinkEvent records an s2s or transport link coming up or going down.
type LinkEvent struct {
	Event    string    `json:"event"` // EventUp or EventDown
	Zone     Zone      `json:"zone"`  // ZoneRemote or ZoneTransport
	Network  string    `json:"network"`
	ConnID   uint64    `json:"conn_id"`
	PeerAddr string    `json:"peer_addr"`
	Since    time.Time `json:"since,omitempty"` // when the link came up (down events)
	Reason   string    `json:"reason,omitempty"`
}

func (*LinkEvent) recordType() RecordType { return TypeLink }

func (r *LinkEvent) check() error {
	if r.Event != EventUp && r.Event != EventDown {
		return fmt.Errorf("%w: link event %q", ErrInvalid, r.Event)
	}
	if r.Zone != ZoneRemote && r.Zone != ZoneTransport {
		return fmt.Errorf("%w: link zone %q", ErrInvalid, r.Zone)
	}
	return nil
}

func (r *LinkEvent) values(v []any) []any {
	var since any
	if !r.Since.IsZero() {
		since = r.Since.UnixMilli()
	}
	return append(v, r.Event, string(r.Zone), r.Network, int64(r.ConnID), r.PeerAddr, since, null(r.Reason))
}

// FileTransfer records a file offered or sent across the border (HTTP
// upload link, Jingle, out-of-band URL).
type FileTransfer struct {
	Direction Direction `json:"direction"`
	Zone      Zone      `json:"zone"`
	Network   string    `json:"network"`
	Account   string    `json:"account"`
	Peer      string    `json:"peer"`
	PeerJID   string    `json:"peer_jid"`
	FileName  string    `json:"file_name"`
	// Size is the size in bytes; negative when unknown.
	Size       int64  `json:"size"`
	MediaType  string `json:"media_type,omitempty"`
	SHA256     string `json:"sha256,omitempty"` // lowercase hex
	URL        string `json:"url,omitempty"`
	ScanResult string `json:"scan_result,omitempty"` // e.g. "clean", "infected: Eicar-Test-Signature"

	Verdict       Verdict `json:"verdict"`
	Rule          string  `json:"rule,omitempty"`
	PolicyVersion string  `json:"policy_version,omitempty"`
	// StanzaSeq is the archive seq of the stanza that carried the file.
	StanzaSeq int64 `json:"stanza_seq,omitempty"`
}

func (*FileTransfer) recordType() RecordType { return TypeFile }

func (r *FileTransfer) check() error {
	if err := checkDirection(r.Direction); err != nil {
		return err
	}
	if err := checkZone(r.Zone, true); err != nil {
		return err
	}
	return checkVerdict(r.Verdict)
}

func (r *FileTransfer) values(v []any) []any {
	var size any
	if r.Size >= 0 {
		size = r.Size
	}
	return append(v, string(r.Direction), string(r.Zone), r.Network, r.Account, r.Peer, r.PeerJID,
		r.FileName, size, null(r.MediaType), null(r.SHA256), null(r.URL), null(r.ScanResult),
		string(r.Verdict), null(r.Rule), null(r.PolicyVersion), nullI(r.StanzaSeq))
}

// PolicyAction records something the policy did besides allow or deny a
// crossing (redaction, disclaimer, quarantine, policy reload ...).
type PolicyAction struct {
	Action        string `json:"action"`
	Rule          string `json:"rule,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
	Account       string `json:"account,omitempty"`
	Peer          string `json:"peer,omitempty"`
	Network       string `json:"network,omitempty"`
	StanzaSeq     int64  `json:"stanza_seq,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

func (*PolicyAction) recordType() RecordType { return TypePolicy }

func (r *PolicyAction) check() error {
	if r.Action == "" {
		return fmt.Errorf("%w: policy action is empty", ErrInvalid)
	}
	return nil
}

func (r *PolicyAction) values(v []any) []any {
	return append(v, r.Action, null(r.Rule), null(r.PolicyVersion), null(r.Account), null(r.Peer),
		null(r.Network), nullI(r.StanzaSeq), null(r.Detail))
}

// AdminAction records who did what as an administrator: user and policy
// changes, and every search, export, hold and prune of the archive.
type AdminAction struct {
	// Actor is who acted, e.g. "os:alice" (the CLI's operating system
	// user) or "xmpp:admin@example.com".
	Actor string `json:"actor"`
	// Origin is where the action came from: "cli", "admin-api", "server".
	Origin string `json:"origin"`
	// Action is a dotted name such as "archive.search" or "user.add".
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	// Detail is free text, usually a JSON object with the parameters.
	Detail string `json:"detail,omitempty"`
}

func (*AdminAction) recordType() RecordType { return TypeAdmin }

func (r *AdminAction) check() error {
	if r.Actor == "" || r.Origin == "" || r.Action == "" {
		return fmt.Errorf("%w: admin action needs actor, origin and action", ErrInvalid)
	}
	return nil
}

func (r *AdminAction) values(v []any) []any {
	return append(v, r.Actor, r.Origin, r.Action, null(r.Target), null(r.Detail))
}

// checkpoint is written by Prune: the chain's attestation of the ranges it
// removed.
type checkpoint struct {
	actor        string
	beforeMS     int64
	rowsPruned   int64
	ranges       int64
	rangesSHA256 string
}

func (*checkpoint) recordType() RecordType { return TypeCheckpoint }
func (*checkpoint) check() error           { return nil }

func (r *checkpoint) values(v []any) []any {
	return append(v, r.actor, r.beforeMS, r.rowsPruned, r.ranges, r.rangesSHA256)
}

func checkDirection(d Direction) error {
	switch d {
	case In, Out, Internal:
		return nil
	}
	return fmt.Errorf("%w: direction %q", ErrInvalid, d)
}

func checkZone(z Zone, local bool) error {
	switch z {
	case ZoneRemote, ZoneTransport:
		return nil
	case ZoneLocal:
		if local {
			return nil
		}
	}
	return fmt.Errorf("%w: zone %q", ErrInvalid, z)
}

func checkVerdict(v Verdict) error {
	switch v {
	case Allow, Deny, Error:
		return nil
	}
	return fmt.Errorf("%w: verdict %q", ErrInvalid, v)
}

// null maps "" to SQL NULL.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullU(n uint64) any {
	if n == 0 {
		return nil
	}
	return int64(n)
}

func nullI(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}
