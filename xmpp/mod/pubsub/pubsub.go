// Package pubsub implements publish-subscribe (a XEP-0060 subset) twice
// over one store: PEP (XEP-0163), where every account's bare JID is a
// pubsub service of its own, and a pubsub service at a domain of its own
// (pubsub.<domain>) where users create nodes.
//
// PEP notifications follow XEP-0163: the account's own resources and the
// contacts that sent it presence get an item when their entity
// capabilities (XEP-0115) include "<node>+notify" and the node's access
// model (open, presence or whitelist) lets them see it; explicit
// subscribers get it too. Caps are learned by asking the entity
// disco#info once per verified hash. New contacts' presence brings them
// the last item of each node (send_last_published_item
// on_sub_and_presence).
//
// On top of plain PEP: publish-options preconditions (XEP-0222/0223),
// avatar conversion to vCard (XEP-0398), and XEP-0402 bookmarks kept in
// step with XEP-0048 bookmarks in private XML storage.
//
// Choices the specifications leave open are listed in docs/xeps.md.
//
// It must not import c2s, s2s, transports or other modules.
package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// Namespaces.
const (
	NS       = "http://jabber.org/protocol/pubsub"
	NSOwner  = "http://jabber.org/protocol/pubsub#owner"
	NSEvent  = "http://jabber.org/protocol/pubsub#event"
	NSErrors = "http://jabber.org/protocol/pubsub#errors"
)

// DB is what the module needs from the main database: rosters (presence
// access model, disco), vCards (XEP-0398) and private XML (XEP-0048
// bookmarks). *storage.DB implements it.
type DB interface {
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, bool, error)
	VCard(ctx context.Context, user string) ([]byte, error)
	SetVCard(ctx context.Context, user string, xml []byte) error
	Private(ctx context.Context, user, key string) ([]byte, error)
	SetPrivate(ctx context.Context, user, key string, xml []byte) error
}

// Options configure the module.
type Options struct {
	Config  config.PubSub
	Hosts   []string // the hosted domains (for the service domain)
	DataDir string   // Config.File is relative to it
	DB      DB
	Log     logrus.FieldLogger
	Rand    io.Reader        // item and query ids; nil: crypto/rand
	Now     func() time.Time // nil: time.Now
}

// Module is PEP plus the pubsub service.
type Module struct {
	cfg    config.PubSub
	store  *Store
	db     DB
	log    logrus.FieldLogger
	rand   io.Reader
	now    func() time.Time
	bus    *hook.Bus
	domain string // the service's domain

	caps *capsCache
	pres *presenceTable

	avMu    sync.Mutex
	avatars map[string]string // account → avatar hash for vcard-temp:x:update ("" none)
}

// Open opens the store. A disabled module is returned without one and
// registers nothing.
func Open(ctx context.Context, o Options) (*Module, error) {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Module{cfg: o.Config, db: o.DB, log: o.Log, rand: o.Rand, now: o.Now,
		domain: o.Config.ServiceDomain(o.Hosts), caps: newCapsCache(), pres: newPresenceTable(),
		avatars: map[string]string{}}
	if !o.Config.Enabled {
		return m, nil
	}
	path := o.Config.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(o.DataDir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pubsub: data directory: %w", err)
	}
	st, err := OpenStore(ctx, path)
	if err != nil {
		return nil, err
	}
	m.store = st
	return m, nil
}

// Enabled reports whether the module serves anything.
func (m *Module) Enabled() bool { return m.store != nil }

// Domain is the pubsub service's domain.
func (m *Module) Domain() string { return m.domain }

// Close closes the store.
func (m *Module) Close() error {
	if m.store == nil {
		return nil
	}
	return m.store.Close()
}

// pepFeatures are advertised on accounts (and the server, where clients
// look for publish-options).
var pepFeatures = []string{
	NS, NS + "#access-open", NS + "#access-presence", NS + "#access-whitelist",
	NS + "#auto-create", NS + "#auto-subscribe", NS + "#config-node", NS + "#create-nodes",
	NS + "#delete-items", NS + "#delete-nodes", NS + "#filtered-notifications", NS + "#item-ids",
	NS + "#last-published", NS + "#modify-affiliations", NS + "#persistent-items",
	NS + "#publish", NS + "#publish-options", NS + "#purge-nodes", NS + "#retract-items",
	NS + "#retrieve-affiliations", NS + "#retrieve-items", NS + "#retrieve-subscriptions",
	NS + "#subscribe",
}

// Feature namespaces of the extensions on top.
const (
	NSBookmarks       = "urn:xmpp:bookmarks:1"
	NSBookmarksCompat = "urn:xmpp:bookmarks:1#compat"
	NSVCardConversion = "urn:xmpp:pep-vcard-conversion:0"
)

// Register attaches PEP to the bus. The service is hosted separately
// (Deliver, at Domain).
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	if m.store == nil {
		return
	}
	bus.HandleIQ(hook.AddrBare, NS, "pubsub", m.pepIQ)
	bus.HandleIQ(hook.AddrBare, NSOwner, "pubsub", m.pepIQ)
	bus.AddFeature(hook.AddrBare, pepFeatures...)
	bus.AddFeature(hook.AddrBare, NSBookmarksCompat, NSVCardConversion)
	bus.AddFeature(hook.AddrHost, NSVCardConversion)
	// Presence is observed, never consumed: the presence module (prio 0)
	// still handles it.
	for _, a := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindPresence, Addr: a}, 10, m.inPresence)
	}
	bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindPresence, Addr: hook.AddrNone}, 10, m.outPresence)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindIQ, Addr: hook.AddrBare}, 10, m.inIQ)
	bus.OnSessionEnded(10, m.sessionEnded)
}

// id returns a random identifier (item ids, subids, query ids).
func (m *Module) id() string {
	var b [12]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a clock
		// based id keeps the server going if a test reader runs dry.
		return fmt.Sprintf("%x", m.now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}

// pubsubError builds an error reply with an optional pubsub#errors
// condition (XEP-0060 §7 and §8 error tables).
func pubsubError(st *stanza.Stanza, cond stanza.Condition, app, text string) *stanza.Stanza {
	r := stanza.Bounce(st, cond, text)
	if r == nil || app == "" {
		return r
	}
	if e := r.Child("", "error"); e != nil {
		el := stanza.NewElement(NSErrors, app)
		if app == "unsupported" {
			el = stanza.NewElement(NSErrors, "unsupported", "feature", text)
		}
		e.Append(el)
	}
	return r
}

// service is the pubsub service a request addresses: an account (PEP)
// or the service domain.
type service struct {
	addr jid.JID
	pep  bool
}

func (s service) key() string { return s.addr.String() }

// pepIQ handles pubsub requests to an account's bare JID.
func (m *Module) pepIQ(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	return m.handle(ctx, env, service{addr: env.Stanza.To.Bare(), pep: true})
}
