package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"mellium.im/xmpp/jid"

	"gatehouse/transports/irc"
	"gatehouse/transports/privilege"
	"gatehouse/transports/registry"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/roster"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// builtinState are the transports the server runs itself (builtin: irc),
// connected to its own component listener.
type builtinState struct {
	secrets map[string][]byte // domain → the secret made at start
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	irc     map[string]*irc.Transport
	stores  []*irc.Store
	stopped bool
}

// registerPrivileges attaches the XEP-0356 module with the permissions
// each configured transport is granted. A builtin transport gets the
// roster permission it needs unless the configuration says otherwise.
func (s *Server) registerPrivileges(r *roster.Module) {
	s.comp.list = s.loadTransports()
	m := privilege.New(r, s.cfg.Hosts[0], s.log.WithField("component", "privilege"))
	for _, t := range s.comp.list {
		p := privilege.Perms{
			Roster: t.Privileges.Roster, Message: t.Privileges.Message,
			Presence: t.Privileges.Presence, Version: t.Privileges.Version,
		}
		if t.Builtin != "" && p.Roster == "" {
			p.Roster = privilege.Both
		}
		m.Grant(t.Domain, p)
	}
	m.Register(s.bus)
	s.comp.priv = m
}

// welcomeComponent runs when a component link is up: it tells the
// component its XEP-0356 permissions.
func (s *Server) welcomeComponent(ctx context.Context, domain string) {
	if s.comp.priv == nil {
		return
	}
	// The server's own notice about the link, like the host's answers for
	// a component: not a user's crossing for policy to inspect.
	if adv := s.comp.priv.Advertisement(domain); adv != nil {
		_ = s.router.Forward(ctx, &router.Envelope{Stanza: adv, Flags: router.BoundaryDone,
			Src: router.Endpoint{Zone: router.ZoneLocal, Domain: adv.From.Domainpart()}})
	}
}

// builtinSecret returns the secret of a builtin transport without one in
// the configuration: random, made once per start.
func (s *Server) builtinSecret(t config.Component) ([]byte, error) {
	if s.comp.builtin.secrets == nil {
		s.comp.builtin.secrets = map[string][]byte{}
	}
	if b := s.comp.builtin.secrets[t.Domain]; b != nil {
		return b, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("a secret for the builtin transport: %w", err)
	}
	sec := []byte(hex.EncodeToString(b[:]))
	s.comp.builtin.secrets[t.Domain] = sec
	return sec, nil
}

// startBuiltins starts the builtin transports; they dial the first
// component listener. Called from serveComponents.
func (s *Server) startBuiltins(ctx context.Context, ln net.Addr) {
	var list []config.Component
	for _, t := range s.cfg.Components.Transports {
		if t.Builtin == "irc" {
			list = append(list, t)
		}
	}
	if len(list) == 0 || ln == nil {
		return
	}
	addr := loopbackOf(ln)
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	b := &s.comp.builtin
	if b.stopped {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	b.cancel = cancel
	b.irc = map[string]*irc.Transport{}
	for _, t := range list {
		log := s.log.WithFields(map[string]any{"component": "irc-transport", "domain": t.Domain})
		store, err := irc.OpenStore(ctx, filepath.Join(s.cfg.DataDir, "irc-"+t.Domain+".db"))
		if err != nil {
			log.WithError(err).Error("the builtin IRC transport cannot start")
			continue
		}
		b.stores = append(b.stores, store)
		nets := make([]irc.Network, 0, len(t.Networks))
		for _, n := range t.Networks {
			nets = append(nets, irc.Network{Name: n.Name, Address: n.Address, TLS: n.TLS})
		}
		tr, err := irc.New(irc.Config{Domain: t.Domain, Server: addr, Secret: b.secrets[t.Domain], Networks: nets, Store: store, Log: log,
			PollInterval: t.PresencePoll.D()})
		if err != nil {
			log.WithError(err).Error("the builtin IRC transport cannot start")
			continue
		}
		b.irc[t.Domain] = tr
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := tr.Run(ctx); err != nil {
				log.WithError(err).Error("the builtin IRC transport stopped")
			}
		}()
	}
}

// stopBuiltins stops the builtin transports (their IRC sessions QUIT) and
// closes their stores.
func (s *Server) stopBuiltins() {
	s.comp.mu.Lock()
	b := &s.comp.builtin
	b.stopped = true
	cancel, stores := b.cancel, b.stores
	b.stores = nil
	s.comp.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	b.wg.Wait()
	for _, st := range stores {
		_ = st.Close()
	}
}

// IRCTransport returns the builtin IRC transport serving domain, if any.
func (s *Server) IRCTransport(domain string) *irc.Transport {
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	return s.comp.builtin.irc[domain]
}

// loopbackOf turns a listener address into one to dial: a wildcard
// address becomes the loopback address of its family.
func loopbackOf(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// loadTransports returns the configured transports followed by the ones in
// the registry (<data_dir>/transports.db), if there is one. A registry that
// cannot be read is logged, not fatal: the configured transports work.
func (s *Server) loadTransports() []config.Component {
	list := s.cfg.Components.Transports
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, registry.File)); err != nil {
		return list
	}
	ctx := context.Background()
	reg, err := registry.Open(ctx, s.cfg.DataDir)
	if err != nil {
		s.log.WithError(err).Error("the transport registry cannot be read; only configured transports are served")
		return list
	}
	defer reg.Close()
	added, err := reg.List(ctx)
	if err != nil {
		s.log.WithError(err).Error("the transport registry cannot be read; only configured transports are served")
		return list
	}
	return registry.Merge(list, added)
}

// componentGone runs when a component link went down. Clients would keep
// showing the transport's contacts as they were: every online user with a
// presence subscription to an address at the domain gets unavailable
// presence from it (the transport sends fresh presence when it is back).
// Local delivery only: nothing crosses the boundary.
func (s *Server) componentGone(ctx context.Context, domain string) {
	users := map[string]jid.JID{}
	for _, ses := range s.table.All() {
		if ses.Available() {
			users[ses.JID.Localpart()] = ses.JID.Bare()
		}
	}
	for user, bare := range users {
		items, _, err := s.db.Roster(ctx, user)
		if err != nil {
			continue
		}
		for _, it := range items {
			if it.Subscription != storage.SubTo && it.Subscription != storage.SubBoth {
				continue
			}
			contact, err := jid.Parse(it.JID)
			if err != nil || contact.Domainpart() != domain {
				continue
			}
			p := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: contact, To: bare}
			p.Append(stanza.NewElement("", "status").AppendText("the " + domain + " transport is not connected"))
			_ = s.router.Forward(ctx, &router.Envelope{Stanza: p, Flags: router.BoundaryDone,
				Src: router.Endpoint{Zone: router.ZoneLocal, Domain: bare.Domainpart()}})
		}
	}
}
