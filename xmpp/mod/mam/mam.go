// Package mam is the users' own message history: XEP-0313 Message Archive
// Management for accounts, with XEP-0441 preferences, XEP-0059 paging and
// XEP-0359 stanza ids. It keeps its archive in a SQLite file of its own
// (mam.db in the data directory, see Store), separate from the main
// database and from the compliance archive (logging/archive), which this
// package never touches: users can read and page their history, never the
// company's record.
//
// Where it sits on the hook bus:
//
//   - Out hooks at HookPriority (below blocking at 1000, above message
//     delivery and carbons at 0) archive what a local client sends, to
//     anyone but itself, and add a stanza-id so that the "sent" carbon tells
//     the user's other clients the archive id (XEP-0313 §3.5). An Out hook
//     at StripPriority, after carbons, takes that stanza-id off again
//     before the message leaves: the recipient has no access to the
//     sender's archive.
//   - In hooks at HookPriority archive what reaches a local account (live
//     or offline) and add the stanza-id to the copy that is delivered. They
//     first strip every stanza-id that claims to come from one of our
//     addresses (XEP-0359 §3), archived or not.
//   - iq handlers on the account's bare JID for query, prefs and metadata;
//     only the account itself may use them.
//
// It must not import c2s, s2s, transports, policy, logging/archive or other
// modules.
package mam

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Hook priorities.
const (
	// HookPriority runs after blocking (1000) so a refused message is not
	// archived (XEP-0313 §6.1), and before message delivery and carbons
	// (0) so that the delivered copy and the carbons carry the stanza-id.
	HookPriority = 500
	// StripPriority runs after carbons, last before a sent message leaves.
	StripPriority = -1000
)

const (
	// queryTimeout bounds the database work of one query.
	queryTimeout = 10 * time.Second
	// maxCachedPrefs bounds the preferences cache; past it the cache
	// starts over (prefs are one indexed read away).
	maxCachedPrefs = 10000
	// firstPrune is the longest wait before the first prune after start,
	// so that a server restarted more often than the prune interval still
	// prunes.
	firstPrune = time.Minute
)

// Roster tells whether a contact is in a user's roster, for the 'roster'
// default preference. *storage.DB implements it.
type Roster interface {
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, bool, error)
}

// Options configure Open.
type Options struct {
	Config  config.MAM
	DataDir string             // Config.File is relative to it
	Roster  Roster             // nil: nobody is in anybody's roster
	Log     logrus.FieldLogger // required
	Now     func() time.Time   // nil: time.Now
	Rand    io.Reader          // archive ids; nil: crypto/rand
	// PruneInterval is the time between retention prunes; 0 derives it
	// from the retention (a quarter of it, between one minute and one hour).
	PruneInterval time.Duration
	// PruneDone, if set, is called after each prune (for tests and metrics).
	PruneDone func(deleted int64, err error)
}

// Module is the message archive module.
type Module struct {
	cfg    config.MAM
	store  *Store // nil when disabled or the archive could not be opened
	roster Roster
	log    logrus.FieldLogger
	now    func() time.Time
	bus    *hook.Bus

	stampMu sync.Mutex
	last    time.Time // newest stamp handed out; stamps never go back

	prefsMu  sync.Mutex
	prefs    map[string]Prefs
	prefsGen uint64 // bumped on every set, so a racing load cannot cache stale prefs

	pruneEvery time.Duration
	pruneDone  func(int64, error)
	pruneMu    sync.Mutex
	pruneTimer *time.Timer
	pruneWG    sync.WaitGroup
	closed     bool
	ctx        context.Context // cancelled by Close, for prunes
	cancel     context.CancelFunc
}

// Open opens the archive and returns the module. With mam.enabled false it
// returns a module that archives nothing and only strips forged stanza-ids.
func Open(ctx context.Context, o Options) (*Module, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Module{cfg: o.Config, roster: o.Roster, log: o.Log, now: o.Now,
		prefs: make(map[string]Prefs), pruneDone: o.PruneDone}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if !o.Config.Enabled {
		return m, nil
	}
	path := o.Config.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(o.DataDir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		m.cancel()
		return nil, fmt.Errorf("mam: data directory: %w", err)
	}
	st, err := OpenStore(ctx, path, o.Rand)
	if err != nil {
		m.cancel()
		return nil, err
	}
	last, err := st.LastTime(ctx)
	if err != nil {
		m.cancel()
		_ = st.Close()
		return nil, err
	}
	m.store, m.last = st, last
	st.SetErrorHandler(func(e Entry, err error) {
		m.log.WithError(err).WithField("user", e.User).Error("message not archived")
	})
	if r := o.Config.Retention.D(); r > 0 {
		m.pruneEvery = o.PruneInterval
		if m.pruneEvery <= 0 {
			m.pruneEvery = min(max(r/4, time.Minute), time.Hour)
		}
		m.schedulePrune(min(m.pruneEvery, firstPrune))
	}
	return m, nil
}

// New is Open for the composition root: a failure to open the archive is
// logged and leaves archiving off (nothing is advertised, so clients do not
// expect history), rather than stopping the server.
func New(cfg config.MAM, dataDir string, roster Roster, log logrus.FieldLogger) *Module {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Open(ctx, Options{Config: cfg, DataDir: dataDir, Roster: roster, Log: log})
	if err != nil {
		log.WithError(err).Error("message archive unavailable: messages are not archived and archive queries are refused")
		cfg.Enabled = false
		m, _ = Open(ctx, Options{Config: cfg, Log: log})
	}
	return m
}

// Store returns the archive (nil when archiving is off).
func (m *Module) Store() *Store { return m.store }

// Close stops pruning and closes the archive. Call it after the last
// stanza was routed (after c2s and s2s shut down).
func (m *Module) Close() error {
	m.pruneMu.Lock()
	m.closed = true
	if m.pruneTimer != nil {
		m.pruneTimer.Stop()
	}
	m.pruneMu.Unlock()
	m.cancel()
	m.pruneWG.Wait()
	if m.store == nil {
		return nil
	}
	return m.store.Close()
}

// DeleteUser removes an account's archive and preferences; the server
// calls it when the account is deleted.
func (m *Module) DeleteUser(ctx context.Context, user string) error {
	m.prefsMu.Lock()
	delete(m.prefs, user)
	m.prefsGen++
	m.prefsMu.Unlock()
	if m.store == nil {
		return nil
	}
	return m.store.DeleteUser(ctx, user)
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	for _, a := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: a}, HookPriority, m.inbound)
	}
	if m.store == nil {
		return
	}
	for _, a := range []hook.Addr{hook.AddrNone, hook.AddrHost, hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindMessage, Addr: a}, HookPriority, m.outbound)
		bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindMessage, Addr: a}, StripPriority, m.stripSent)
	}
	bus.HandleIQ(hook.AddrBare, NS, "query", m.queryIQ)
	bus.HandleIQ(hook.AddrBare, NS, "prefs", m.prefsIQ)
	bus.HandleIQ(hook.AddrBare, NS, "metadata", m.metadataIQ)
	bus.AddFeature(hook.AddrBare, NS, NSExtended, NSSID)
	bus.AddFeature(hook.AddrHost, NS, NSExtended)
}

// inbound archives a message reaching a local account; it never consumes.
func (m *Module) inbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	stripLocalIDs(st, m.bus.IsHost)
	if m.store == nil || st.From.Equal(jid.JID{}) || !storable(st) {
		return false
	}
	m.archive(ctx, st.To.Bare(), st.From, st)
	return false
}

// outbound archives what a local client sends; it never consumes.
func (m *Module) outbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	from := st.From
	if from.Localpart() == "" || !m.bus.IsHost(from.Domainpart()) {
		return false
	}
	// A client must not be able to plant an archive id either.
	stripLocalIDs(st, m.bus.IsHost)
	owner := from.Bare()
	switch {
	case st.To.Equal(jid.JID{}), st.To.Bare().Equal(owner):
		// To one's own account: archived once, when it is delivered, so a
		// note to self is not in the archive twice.
		return false
	case st.To.Localpart() == "" && m.bus.IsHost(st.To.Domainpart()):
		return false // to the server itself: nobody to talk to
	case !storable(st):
		return false
	}
	m.archive(ctx, owner, st.To, st)
	return false
}

// stripSent removes the sender's stanza-id after carbons took their copy
// (XEP-0313 §3.5: not for the recipient's eyes).
func (m *Module) stripSent(ctx context.Context, env *router.Envelope) bool {
	stripLocalIDs(env.Stanza, m.bus.IsHost)
	return false
}

// archive stores st in owner's archive, if the preferences allow, and tags
// st with the archive id.
func (m *Module) archive(ctx context.Context, owner, peer jid.JID, st *stanza.Stanza) {
	user := owner.Localpart()
	log := m.log.WithField("user", user)
	ok, err := m.shallStore(ctx, user, owner, peer)
	if err != nil {
		log.WithError(err).Error("reading archiving preferences; message not archived")
		return
	}
	if !ok {
		return
	}
	id, err := m.store.AppendAsync(ctx, Entry{
		User: user, Time: m.stamp(), Peer: peer.Bare().String(), PeerRes: peer.Resourcepart(),
		XML: forStorage(st).AppendXML(nil, stanza.NSClient),
	})
	if err != nil {
		log.WithError(err).Error("message not archived")
		return
	}
	// Clip first: the child list may share its array with a copy made
	// earlier (a carbon), which must not see this element appear.
	st.Children = append(slices.Clip(st.Children), stanza.Node{El: stanzaID(owner, id)})
}

// stamp returns the archive time of a new message. Stamps never go back,
// even when the wall clock does, so archive order, stamp order and the
// order of (ts, id) in the store are one and the same.
func (m *Module) stamp() time.Time {
	t := m.now().UTC().Truncate(time.Millisecond)
	m.stampMu.Lock()
	defer m.stampMu.Unlock()
	if t.Before(m.last) {
		return m.last
	}
	m.last = t
	return t
}

// shallStore applies the user's preferences to peer.
func (m *Module) shallStore(ctx context.Context, user string, owner, peer jid.JID) (bool, error) {
	p, err := m.loadPrefs(ctx, user)
	if err != nil {
		return false, err
	}
	switch p.Decide(peer) {
	case RuleAlways:
		return true, nil
	case RuleNever:
		return false, nil
	}
	if peer.Bare().Equal(owner) {
		return true, nil // one's own account counts as a contact
	}
	if m.roster == nil {
		return false, nil
	}
	it, ok, err := m.roster.RosterItem(ctx, user, peer.Bare().String())
	if err != nil {
		return false, fmt.Errorf("mam: roster of %q: %w", user, err)
	}
	// An unanswered subscription request alone does not make a stranger a
	// contact: the user never agreed to anything.
	stranger := it.Subscription == storage.SubNone && !it.Ask && it.PendingIn
	return ok && !stranger, nil
}

// loadPrefs returns the user's preferences, the configured default if the
// user set none.
func (m *Module) loadPrefs(ctx context.Context, user string) (Prefs, error) {
	m.prefsMu.Lock()
	p, ok := m.prefs[user]
	gen := m.prefsGen
	m.prefsMu.Unlock()
	if ok {
		return p, nil
	}
	p, found, err := m.store.Prefs(ctx, user)
	if err != nil {
		return Prefs{}, err
	}
	if !found {
		p = Prefs{Default: m.cfg.Default}
	}
	m.prefsMu.Lock()
	if gen == m.prefsGen {
		if len(m.prefs) >= maxCachedPrefs {
			clear(m.prefs)
		}
		m.prefs[user] = p
	}
	m.prefsMu.Unlock()
	return p, nil
}

// ownArchive reports whether an iq is the account asking about itself:
// archives are private (XEP-0313 §8.1).
func ownArchive(st *stanza.Stanza) bool {
	return st.From.Localpart() != "" && st.From.Bare().Equal(st.To.Bare()) && st.To.Resourcepart() == ""
}

// refuse answers a request for someone else's archive. XEP-0313 suggests
// forbidden; we answer service-unavailable, the reply for a missing account,
// so the archive cannot be used to find out which accounts exist (the same
// reasoning as XEP-0030 §8 for disco).
func refuse(st *stanza.Stanza) *stanza.Stanza {
	return stanza.Bounce(st, stanza.ServiceUnavailable, "")
}

func (m *Module) queryIQ(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if !ownArchive(st) {
		return refuse(st)
	}
	if st.Type == "get" {
		return st.Result(queryForm())
	}
	req, qerr := parseQuery(st.Payload(), m.cfg.MaxPageSize)
	if qerr != nil {
		return stanza.Bounce(st, qerr.cond, qerr.text)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	user := st.To.Localpart()
	res, err := m.store.Query(ctx, user, req.Filter, req.Page)
	switch {
	case errors.Is(err, ErrNotFound):
		return stanza.Bounce(st, stanza.ItemNotFound, "no such archive id")
	case err != nil:
		m.log.WithError(err).WithField("user", user).Error("archive query failed")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	order := res.Items
	if req.Flip {
		order = slices.Clone(order)
		slices.Reverse(order)
	}
	// Results go straight to the querying session, ahead of the iq result
	// that follows them through the router: the session's queue keeps the
	// order (XEP-0313 §4: results first, then the fin).
	sess := m.bus.Sessions().Get(st.From)
	for _, it := range order {
		msg := m.resultMessage(st, req.QueryID, it)
		if sess != nil {
			if err := sess.Send(msg); err != nil {
				return nil // the session is gone; nobody to answer
			}
		} else {
			m.bus.Send(ctx, msg)
		}
	}
	return st.Result(finElement(res))
}

// resultMessage wraps an archived message for a query result (XEP-0313 §4.2).
func (m *Module) resultMessage(q *stanza.Stanza, queryID string, it Item) *stanza.Stanza {
	fwd := stanza.NewElement(NSForward, "forwarded").
		Append(stanza.NewElement(stanza.NSDelay, "delay", "stamp", stamp(it.Time)))
	if msg, err := decodeStanza(it.XML); err == nil {
		fwd.Append(msg.Element())
	} else {
		// Keep the id and stamp so paging stays consistent; the XEP allows
		// a result without the message (§3.2).
		m.log.WithError(err).WithField("id", it.ID).Error("undecodable archived message")
	}
	res := stanza.NewElement(NS, "result")
	if queryID != "" {
		res.SetAttr("queryid", queryID)
	}
	res.SetAttr("id", it.ID)
	return &stanza.Stanza{Kind: stanza.KindMessage, From: q.To.Bare(), To: q.From,
		Children: []stanza.Node{{El: res.Append(fwd)}}}
}

func decodeStanza(b []byte) (*stanza.Stanza, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("mam: decode archived message: %w", err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			st, err := stanza.Parse(d, start)
			if err != nil {
				return nil, fmt.Errorf("mam: decode archived message: %w", err)
			}
			return st, nil
		}
	}
}

func (m *Module) prefsIQ(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if !ownArchive(st) {
		return refuse(st)
	}
	user := st.To.Localpart()
	if st.Type == "get" {
		p, err := m.loadPrefs(ctx, user)
		if err != nil {
			m.log.WithError(err).WithField("user", user).Error("reading archiving preferences")
			return stanza.Bounce(st, stanza.InternalServerError, "")
		}
		return st.Result(prefsElement(p))
	}
	p, qerr := parsePrefs(st.Payload())
	if qerr != nil {
		return stanza.Bounce(st, qerr.cond, qerr.text)
	}
	m.prefsMu.Lock()
	defer m.prefsMu.Unlock()
	// Held across the write so that loads and sets of one user's prefs
	// cannot interleave into a stale cache entry.
	if err := m.store.SetPrefs(ctx, user, p); err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing archiving preferences")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.prefsGen++
	if len(m.prefs) >= maxCachedPrefs {
		clear(m.prefs)
	}
	m.prefs[user] = p
	return st.Result(prefsElement(p))
}

func (m *Module) metadataIQ(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if !ownArchive(st) {
		return refuse(st)
	}
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "")
	}
	user := st.To.Localpart()
	md, err := Metadata(ctx, m.store, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading archive metadata")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	return st.Result(md)
}

// schedulePrune arms the retention timer. A timer rather than a goroutine
// with a ticker: nothing runs (or leaks) between prunes.
func (m *Module) schedulePrune(d time.Duration) {
	m.pruneMu.Lock()
	defer m.pruneMu.Unlock()
	if m.closed {
		return
	}
	m.pruneTimer = time.AfterFunc(d, m.prune)
}

func (m *Module) prune() {
	m.pruneMu.Lock()
	if m.closed {
		m.pruneMu.Unlock()
		return
	}
	m.pruneWG.Add(1)
	m.pruneMu.Unlock()
	defer m.pruneWG.Done()
	cutoff := m.now().Add(-m.cfg.Retention.D())
	n, err := m.store.Prune(m.ctx, cutoff)
	switch {
	case err != nil && m.ctx.Err() == nil:
		m.log.WithError(err).Error("pruning the message archive")
	case n > 0:
		m.log.WithFields(logrus.Fields{"deleted": n, "before": stamp(cutoff)}).Info("pruned the message archive")
	}
	if m.pruneDone != nil {
		m.pruneDone(n, err)
	}
	m.schedulePrune(m.pruneEvery)
}
