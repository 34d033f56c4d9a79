// Package irc is Gatehouse's own IRC transport: a XEP-0114 component that
// puts IRC users into their XMPP users' rosters and IRC channels into
// rooms. The server runs it in-process (components.transports[].builtin:
// irc) and `gatehouse transport irc` runs it as a process of its own; both
// reach the server through its component listener, so every stanza crosses
// the compliance boundary like any third-party transport's.
//
// Users register a network and a nick (XEP-0077 form, or the XEP-0100
// prompt); their contacts are written into their rosters through the
// privileged-entity roster permission (XEP-0356) when the server grants it,
// else offered with presence subscriptions. Presence of contacts comes from
// MONITOR where the server has it, else WATCH, else ISON polling; away
// status from away-notify. Channels are rooms (join, topic, occupants, messages,
// leave). IRCv3 echo-message, message-tags (msgid) and server-time are used
// where offered. Registrations and contacts live in SQLite; IRC
// connections come back with exponential backoff.
package irc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/transports/component"
	"gatehouse/xmpp/stanza"
)

// Namespaces.
const (
	nsRegister  = "jabber:iq:register"
	nsGateway   = "jabber:iq:gateway"
	nsData      = "jabber:x:data"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsDiscoItem = "http://jabber.org/protocol/disco#items"
	nsRoster    = "jabber:iq:roster"
	nsMUC       = "http://jabber.org/protocol/muc"
	nsMUCUser   = "http://jabber.org/protocol/muc#user"
	nsPriv1     = "urn:xmpp:privilege:1"
	nsPriv2     = "urn:xmpp:privilege:2"
	nsPing      = "urn:xmpp:ping"
	nsDelay     = "urn:xmpp:delay"
	nsSID       = "urn:xmpp:sid:0"
	nsVersion   = "jabber:iq:version"
)

// registrationRequired: the user has no registration for the network.
const registrationRequired = stanza.Condition("registration-required")

// Network is an IRC network users may register with.
type Network struct {
	Name    string
	Address string // host:port
	TLS     bool
	// TLSConfig overrides the TLS settings (tests trust their own CA).
	TLSConfig *tls.Config
}

// Config configures a Transport.
type Config struct {
	Domain   string
	Server   string // the server's component listener, host:port
	Secret   []byte
	Networks []Network
	Store    *Store
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts (to IRC and to the server); defaults 1s and 2m.
	ReconnectMin, ReconnectMax time.Duration
	// PollInterval is the ISON interval on networks without MONITOR or WATCH;
	// default 30s.
	PollInterval time.Duration
	Log          logrus.FieldLogger
}

// Transport is the IRC transport. Construct with New, then Run.
type Transport struct {
	cfg   Config
	log   logrus.FieldLogger
	store *Store
	nets  map[string]Network
	gw    jid.JID

	lmu  sync.Mutex
	link *component.Client

	mu         sync.Mutex
	privRoster bool
	users      map[string]*user // bare JID → user
	wg         sync.WaitGroup
	stopped    bool
}

// user is an XMPP user of the transport with the resources it knows are
// available and the user's IRC sessions.
type user struct {
	jid       jid.JID
	resources map[string]bool // available full JIDs
	sessions  map[string]*session
}

// New returns a transport.
func New(cfg Config) (*Transport, error) {
	if cfg.Store == nil {
		return nil, errors.New("irc: no store")
	}
	if len(cfg.Networks) == 0 {
		return nil, errors.New("irc: no networks")
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = time.Second
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = max(2*time.Minute, cfg.ReconnectMin)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	if cfg.Log == nil {
		l := logrus.New()
		cfg.Log = l
	}
	gw, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, fmt.Errorf("irc: domain %q: %w", cfg.Domain, err)
	}
	t := &Transport{cfg: cfg, log: cfg.Log, store: cfg.Store, nets: map[string]Network{}, gw: gw, users: map[string]*user{}}
	for _, n := range cfg.Networks {
		t.nets[n.Name] = n
	}
	return t, nil
}

// Networks returns the network names, sorted.
func (t *Transport) networkNames() []string {
	out := make([]string, 0, len(t.nets))
	for n := range t.nets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (t *Transport) defaultNetwork() string { return t.cfg.Networks[0].Name }

// Run connects to the server and serves until ctx ends; a lost link is
// dialled again with backoff. IRC sessions end with the link.
func (t *Transport) Run(ctx context.Context) error {
	delay := t.cfg.ReconnectMin
	for {
		c, err := component.Dial(ctx, t.cfg.Server, t.cfg.Domain, t.cfg.Secret)
		if err == nil {
			delay = t.cfg.ReconnectMin
			t.log.WithField("server", t.cfg.Server).Info("irc transport linked to the server")
			t.setLink(c)
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			t.probeUsers(ctx)
			err = t.serve(ctx, c)
			stop()
			t.setLink(nil)
			t.stopSessions()
		}
		if ctx.Err() != nil {
			t.wg.Wait()
			return nil
		}
		if errors.Is(err, component.ErrRefused) {
			t.log.WithError(err).Error("the server refused the irc transport")
		} else {
			t.log.WithError(err).Warn("irc transport: link to the server lost")
		}
		select {
		case <-ctx.Done():
			t.wg.Wait()
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, t.cfg.ReconnectMax)
	}
}

func (t *Transport) setLink(c *component.Client) {
	t.lmu.Lock()
	t.link = c
	t.lmu.Unlock()
}

// send writes a stanza to the server; it is dropped while the link is down.
func (t *Transport) send(s *stanza.Stanza) {
	t.lmu.Lock()
	c := t.link
	t.lmu.Unlock()
	if c == nil {
		return
	}
	if err := c.Send(s); err != nil {
		t.log.WithError(err).Debug("irc transport: send failed")
	}
}

func (t *Transport) serve(ctx context.Context, c *component.Client) error {
	for {
		s, err := c.Recv()
		if err != nil {
			return err
		}
		t.handle(ctx, s)
	}
}

// probeUsers asks the server for the presence of every registered user:
// after a (re)link the transport learns who is online.
func (t *Transport) probeUsers(ctx context.Context) {
	regs, err := t.store.Registrations(ctx, "")
	if err != nil {
		t.log.WithError(err).Error("reading registrations")
		return
	}
	seen := map[string]bool{}
	for _, r := range regs {
		if seen[r.User] {
			continue
		}
		seen[r.User] = true
		if u, err := jid.Parse(r.User); err == nil {
			t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "probe", From: t.gw, To: u})
		}
	}
}

func (t *Transport) handle(ctx context.Context, s *stanza.Stanza) {
	switch s.Kind {
	case stanza.KindIQ:
		t.handleIQ(ctx, s)
	case stanza.KindPresence:
		t.handlePresence(ctx, s)
	case stanza.KindMessage:
		t.handleMessage(ctx, s)
	}
}

// reply sends r, the answer to s.
func (t *Transport) reply(s, r *stanza.Stanza) {
	if r == nil {
		return
	}
	if r.From.Equal(jid.JID{}) {
		r.From = s.To
	}
	if r.To.Equal(jid.JID{}) {
		r.To = s.From
	}
	t.send(r)
}

func (t *Transport) handleIQ(ctx context.Context, s *stanza.Stanza) {
	if !s.IsRequest() {
		if s.Type == "error" {
			t.log.WithField("stanza", s.String()).Debug("error from the server")
		}
		return
	}
	q := s.Payload()
	if q == nil {
		t.reply(s, stanza.Bounce(s, stanza.BadRequest, ""))
		return
	}
	tg, err := parseTarget(s.To)
	if err != nil {
		t.reply(s, stanza.Bounce(s, stanza.ItemNotFound, "not an IRC address"))
		return
	}
	switch {
	case q.Name.Space == nsPing:
		t.reply(s, s.Result())
	case q.Name.Space == nsDiscoInfo && s.Type == "get":
		t.reply(s, t.discoInfo(s, tg))
	case q.Name.Space == nsDiscoItem && s.Type == "get":
		t.reply(s, s.Result(stanza.NewElement(nsDiscoItem, "query")))
	case q.Name.Space == nsVersion && s.Type == "get" && tg.name == "":
		t.reply(s, s.Result(stanza.NewElement(nsVersion, "query").Append(
			stanza.NewElement(nsVersion, "name").AppendText("Gatehouse IRC transport"))))
	case q.Name.Space == nsRegister && tg.name == "":
		t.reply(s, t.register(ctx, s, q))
	case q.Name.Space == nsGateway && tg.name == "":
		t.reply(s, t.gateway(s, q))
	default:
		t.reply(s, stanza.Bounce(s, stanza.ServiceUnavailable, ""))
	}
}

func (t *Transport) discoInfo(s *stanza.Stanza, tg target) *stanza.Stanza {
	q := stanza.NewElement(nsDiscoInfo, "query")
	feature := func(ns ...string) {
		for _, n := range ns {
			q.Append(stanza.NewElement(nsDiscoInfo, "feature", "var", n))
		}
	}
	switch {
	case tg.name == "":
		q.Append(stanza.NewElement(nsDiscoInfo, "identity", "category", "gateway", "type", "irc", "name", "IRC"))
		q.Append(stanza.NewElement(nsDiscoInfo, "identity", "category", "conference", "type", "irc", "name", "IRC channels"))
		feature(nsDiscoInfo, nsRegister, nsGateway, nsMUC, nsPing, nsVersion)
	case tg.channel && tg.resource == "":
		q.Append(stanza.NewElement(nsDiscoInfo, "identity", "category", "conference", "type", "text", "name", tg.name))
		feature(nsDiscoInfo, nsMUC, "muc_open", "muc_public", "muc_nonanonymous", "muc_unmoderated")
	default:
		q.Append(stanza.NewElement(nsDiscoInfo, "identity", "category", "client", "type", "pc", "name", tg.name))
		feature(nsDiscoInfo)
	}
	return s.Result(q)
}

// register implements XEP-0077 in-band registration with the gateway
// (XEP-0100 §4.1): a form with the network, the nick, an optional server
// password and an optional list of contacts.
func (t *Transport) register(ctx context.Context, s *stanza.Stanza, q *stanza.Element) *stanza.Stanza {
	user := s.From.Bare()
	if s.Type == "get" {
		return s.Result(t.registerForm(ctx, user))
	}
	if q.Child(nsRegister, "remove") != nil {
		if err := t.unregister(ctx, user); err != nil {
			t.log.WithError(err).Error("unregistering")
			return stanza.Bounce(s, stanza.InternalServerError, "")
		}
		return s.Result()
	}
	reg := Registration{User: user.String(), Network: t.defaultNetwork()}
	var contacts []string
	if x := q.Child(nsData, "x"); x != nil {
		v := formValues(x)
		if n := first(v["network"]); n != "" {
			reg.Network = n
		}
		reg.Nick, reg.Password = first(v["nick"]), first(v["password"])
		for _, c := range v["contacts"] {
			for _, f := range strings.FieldsFunc(c, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
				contacts = append(contacts, f)
			}
		}
	} else {
		reg.Nick = strings.TrimSpace(q.ChildText(nsRegister, "nick"))
		if reg.Nick == "" {
			reg.Nick = strings.TrimSpace(q.ChildText(nsRegister, "username"))
		}
		reg.Password = q.ChildText(nsRegister, "password")
	}
	if _, ok := t.nets[reg.Network]; !ok {
		return stanza.Bounce(s, stanza.NotAcceptable, "unknown network "+reg.Network+"; choose one of "+strings.Join(t.networkNames(), ", "))
	}
	if !validNick(reg.Nick) {
		return stanza.Bounce(s, stanza.NotAcceptable, "an IRC nick is required: letters, digits and -[]\\`^{}|_, not starting with a digit or -")
	}
	for _, c := range contacts {
		if !validNick(c) {
			return stanza.Bounce(s, stanza.NotAcceptable, "not an IRC nick: "+c)
		}
	}
	if err := t.store.Register(ctx, reg); err != nil {
		t.log.WithError(err).Error("storing a registration")
		return stanza.Bounce(s, stanza.InternalServerError, "")
	}
	for _, c := range contacts {
		if _, err := t.store.AddContact(ctx, reg.User, reg.Network, c); err != nil {
			t.log.WithError(err).Error("storing a contact")
		}
	}
	t.log.WithFields(logrus.Fields{"user": reg.User, "network": reg.Network, "nick": reg.Nick}).Info("irc registration")
	// After the answer: the roster entries, then the IRC connection (the
	// user is online: it just sent this from a resource).
	go func() {
		t.populateRoster(ctx, user, reg.Network, contacts, true)
		t.available(ctx, s.From)
		t.restart(ctx, user, reg.Network)
	}()
	return s.Result()
}

func (t *Transport) registerForm(ctx context.Context, user jid.JID) *stanza.Element {
	regs, _ := t.store.Registrations(ctx, user.String())
	cur := Registration{Network: t.defaultNetwork()}
	if len(regs) > 0 {
		cur = regs[0]
	}
	q := stanza.NewElement(nsRegister, "query")
	q.Append(stanza.NewElement(nsRegister, "instructions").AppendText(
		"Choose an IRC network and your nick there. Your IRC contacts appear in your roster as nick%network@" + t.cfg.Domain + "."))
	if len(regs) > 0 {
		q.Append(stanza.NewElement(nsRegister, "registered"))
	}
	q.Append(stanza.NewElement(nsRegister, "nick").AppendText(cur.Nick), stanza.NewElement(nsRegister, "password"))
	x := stanza.NewElement(nsData, "x", "type", "form")
	x.Append(stanza.NewElement(nsData, "title").AppendText("IRC registration"))
	field := func(typ, v, label string, values ...string) *stanza.Element {
		f := stanza.NewElement(nsData, "field", "type", typ, "var", v)
		if label != "" {
			f.SetAttr("label", label)
		}
		for _, val := range values {
			f.Append(stanza.NewElement(nsData, "value").AppendText(val))
		}
		x.Append(f)
		return f
	}
	field("hidden", "FORM_TYPE", "", nsRegister)
	nf := field("list-single", "network", "Network", cur.Network)
	for _, n := range t.networkNames() {
		nf.Append(stanza.NewElement(nsData, "option", "label", n).Append(stanza.NewElement(nsData, "value").AppendText(n)))
	}
	nf.Append(stanza.NewElement(nsData, "required"))
	field("text-single", "nick", "Nick", cur.Nick).Append(stanza.NewElement(nsData, "required"))
	field("text-private", "password", "Server password (if the network needs one)")
	field("text-multi", "contacts", "IRC contacts to add (one nick a line)")
	return q.Append(x)
}

func formValues(x *stanza.Element) map[string][]string {
	out := map[string][]string{}
	for _, f := range x.Elements() {
		if f.Name.Local != "field" {
			continue
		}
		for _, v := range f.Elements() {
			if v.Name.Local == "value" {
				out[f.AttrValue("var")] = append(out[f.AttrValue("var")], strings.TrimSpace(v.Text()))
			}
		}
	}
	return out
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// validNick accepts RFC 2812 nicks (any length; the server truncates).
func validNick(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', strings.ContainsRune("[]\\`_^{|}", r):
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (t *Transport) unregister(ctx context.Context, u jid.JID) error {
	regs, err := t.store.Registrations(ctx, u.String())
	if err != nil {
		return err
	}
	for _, r := range regs {
		contacts, _ := t.store.Contacts(ctx, r.User, r.Network)
		t.stopSession(u, r.Network)
		var items []*stanza.Element
		for _, c := range contacts {
			cj, err := userJID(t.cfg.Domain, r.Network, c)
			if err != nil {
				continue
			}
			t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: cj, To: u})
			t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed", From: cj, To: u})
			items = append(items, stanza.NewElement(nsRoster, "item", "jid", cj.String(), "subscription", "remove"))
		}
		if t.hasRosterPrivilege() && len(items) > 0 {
			t.rosterSet(u, items...)
		}
	}
	if err := t.store.Unregister(ctx, u.String(), ""); err != nil {
		return err
	}
	// XEP-0100 §4.3: the gateway leaves the user's roster too.
	t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: t.gw, To: u})
	t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed", From: t.gw, To: u})
	t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribe", From: t.gw, To: u})
	return nil
}

// gateway implements jabber:iq:gateway (XEP-0100 §6.3): from a nick (or
// nick%network) to the contact's address.
func (t *Transport) gateway(s *stanza.Stanza, q *stanza.Element) *stanza.Stanza {
	if s.Type == "get" {
		return s.Result(stanza.NewElement(nsGateway, "query").Append(
			stanza.NewElement(nsGateway, "desc").AppendText("Enter the IRC nick of the contact (nick%network for a network other than "+t.defaultNetwork()+")."),
			stanza.NewElement(nsGateway, "prompt").AppendText("IRC nick")))
	}
	in := strings.TrimSpace(q.ChildText(nsGateway, "prompt"))
	nick, network := in, t.defaultNetwork()
	if i := strings.LastIndexByte(in, '%'); i > 0 {
		nick, network = in[:i], in[i+1:]
	}
	if _, ok := t.nets[network]; !ok || !validNick(nick) {
		return stanza.Bounce(s, stanza.NotAcceptable, "not an IRC nick on a known network: "+in)
	}
	j, err := userJID(t.cfg.Domain, network, nick)
	if err != nil {
		return stanza.Bounce(s, stanza.NotAcceptable, err.Error())
	}
	return s.Result(stanza.NewElement(nsGateway, "query").Append(
		stanza.NewElement(nsGateway, "jid").AppendText(j.String()),
		stanza.NewElement(nsGateway, "prompt").AppendText(j.String())))
}

// hasRosterPrivilege reports whether the server granted roster set.
func (t *Transport) hasRosterPrivilege() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.privRoster
}

// rosterSet writes items into the user's roster (XEP-0356).
func (t *Transport) rosterSet(u jid.JID, items ...*stanza.Element) {
	q := stanza.NewElement(nsRoster, "query").Append(items...)
	t.send(&stanza.Stanza{Kind: stanza.KindIQ, Type: "set", ID: fmt.Sprintf("roster-%d", time.Now().UnixNano()),
		From: t.gw, To: u.Bare(), Children: []stanza.Node{{El: q}}})
}

func rosterItem(j jid.JID, name string) *stanza.Element {
	it := stanza.NewElement(nsRoster, "item", "jid", j.String(), "subscription", "both")
	if name != "" {
		it.SetAttr("name", name)
	}
	return it.Append(stanza.NewElement(nsRoster, "group").AppendText("IRC"))
}

// populateRoster puts contacts (and, with gateway, the gateway itself) into
// the user's roster: directly with the roster privilege, else by asking
// the user to accept presence subscriptions (XEP-0100 §4.1).
func (t *Transport) populateRoster(ctx context.Context, u jid.JID, network string, nicks []string, gateway bool) {
	var items []*stanza.Element
	if gateway {
		items = append(items, rosterItem(t.gw, "IRC"))
	}
	for _, n := range nicks {
		cj, err := userJID(t.cfg.Domain, network, n)
		if err != nil {
			continue
		}
		items = append(items, rosterItem(cj, n))
	}
	if len(items) == 0 {
		return
	}
	if t.hasRosterPrivilege() {
		t.rosterSet(u, items...)
		return
	}
	for _, it := range items {
		j, _ := jid.Parse(it.AttrValue("jid"))
		p := &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribe", From: j, To: u.Bare()}
		if n := it.AttrValue("name"); n != "" {
			p.Append(stanza.NewElement("http://jabber.org/protocol/nick", "nick").AppendText(n))
		}
		t.send(p)
	}
}

// handleMessage takes a message from a user towards IRC.
func (t *Transport) handleMessage(ctx context.Context, s *stanza.Stanza) {
	if s.From.Localpart() == "" && s.To.Localpart() == "" {
		t.privilegeAdvertisement(s)
		return
	}
	if s.Type == "error" {
		return
	}
	tg, err := parseTarget(s.To)
	if err != nil || tg.name == "" {
		if err != nil {
			t.reply(s, stanza.Bounce(s, stanza.ItemNotFound, "not an IRC address"))
		}
		return
	}
	ses := t.session(s.From.Bare(), tg.network)
	if ses == nil {
		t.reply(s, stanza.ErrorReply(s, stanza.Auth, registrationRequired, "register with the IRC transport ("+t.cfg.Domain+") for network "+tg.network+" first"))
		return
	}
	body := s.Body()
	switch {
	case tg.channel && tg.resource == "" && s.Type == "groupchat":
		if subj := s.Child("", "subject"); subj != nil && body == "" {
			ses.topic(tg.name, subj.Text())
			return
		}
		if body != "" && !ses.say(tg.name, body, s) {
			t.reply(s, stanza.ErrorReply(s, stanza.Wait, stanza.RecipientUnavailable, "the IRC connection is not up; try again"))
		}
	case tg.channel && tg.resource != "":
		// A private message to an occupant.
		if body != "" && !ses.say(tg.resource, body, nil) {
			t.reply(s, stanza.ErrorReply(s, stanza.Wait, stanza.RecipientUnavailable, "the IRC connection is not up; try again"))
		}
	case !tg.channel:
		if body == "" {
			return // chat states and receipts have no IRC equivalent
		}
		if !ses.say(tg.name, body, nil) {
			t.reply(s, stanza.ErrorReply(s, stanza.Wait, stanza.RecipientUnavailable, "the IRC connection is not up; try again"))
		}
	default:
		t.reply(s, stanza.Bounce(s, stanza.BadRequest, "messages to a room are of type groupchat"))
	}
}

// privilegeAdvertisement records what the server grants (XEP-0356 §3).
func (t *Transport) privilegeAdvertisement(s *stanza.Stanza) {
	p := s.Child(nsPriv2, "privilege")
	if p == nil {
		p = s.Child(nsPriv1, "privilege")
	}
	if p == nil {
		return
	}
	roster := false
	for _, perm := range p.Elements() {
		if perm.AttrValue("access") == "roster" {
			typ := perm.AttrValue("type")
			roster = typ == "set" || typ == "both"
		}
	}
	t.mu.Lock()
	t.privRoster = roster
	t.mu.Unlock()
	t.log.WithField("roster", roster).Info("privileges granted by the server")
}

// handlePresence tracks the user's availability, manages contacts and
// joins and leaves channels.
func (t *Transport) handlePresence(ctx context.Context, s *stanza.Stanza) {
	if s.From.Localpart() == "" {
		return
	}
	tg, err := parseTarget(s.To)
	if err != nil {
		if s.Type != "error" && s.Type != "unavailable" {
			t.reply(s, stanza.Bounce(s, stanza.ItemNotFound, "not an IRC address"))
		}
		return
	}
	u := s.From.Bare()
	if tg.channel {
		t.roomPresence(ctx, s, tg)
		return
	}
	switch s.Type {
	case "":
		t.available(ctx, s.From)
		t.startAll(ctx, u)
	case "unavailable":
		if t.unavailable(s.From) {
			t.stopAll(u)
		}
	case "probe":
		t.probe(s, tg)
	case "subscribe":
		t.subscribe(ctx, s, tg)
	case "unsubscribe", "unsubscribed":
		if tg.name != "" {
			_ = t.store.RemoveContact(ctx, u.String(), tg.network, tg.name)
			if ses := t.session(u, tg.network); ses != nil {
				ses.unwatch(tg.name)
			}
		}
		if s.Type == "unsubscribe" {
			t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed"})
		}
	}
}

func (t *Transport) roomPresence(ctx context.Context, s *stanza.Stanza, tg target) {
	u := s.From.Bare()
	ses := t.session(u, tg.network)
	if ses == nil {
		if s.Type == "" {
			t.reply(s, stanza.ErrorReply(s, stanza.Auth, registrationRequired, "register with the IRC transport ("+t.cfg.Domain+") first"))
		}
		return
	}
	switch s.Type {
	case "":
		t.available(ctx, s.From)
		ses.join(tg.name, s.From)
	case "unavailable":
		ses.part(tg.name, s.From)
	}
}

func (t *Transport) subscribe(ctx context.Context, s *stanza.Stanza, tg target) {
	u := s.From.Bare()
	if tg.name == "" {
		t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribed"})
		return
	}
	if _, err := t.store.Registration(ctx, u.String(), tg.network); err != nil {
		t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed"})
		return
	}
	if _, err := t.store.AddContact(ctx, u.String(), tg.network, tg.name); err != nil {
		t.log.WithError(err).Error("storing a contact")
	}
	t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribed"})
	if t.hasRosterPrivilege() {
		t.rosterSet(u, rosterItem(s.To.Bare(), tg.name))
	} else {
		t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribe"})
	}
	if ses := t.session(u, tg.network); ses != nil {
		ses.watch(tg.name)
	}
}

func (t *Transport) probe(s *stanza.Stanza, tg target) {
	ses := t.session(s.From.Bare(), tg.network)
	if tg.name == "" {
		on := false
		for _, n := range t.networkNames() {
			if x := t.session(s.From.Bare(), n); x != nil && x.isConnected() {
				on = true
			}
		}
		typ := "unavailable"
		if on {
			typ = ""
		}
		t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: typ})
		return
	}
	if ses == nil {
		t.reply(s, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"})
		return
	}
	t.reply(s, ses.contactPresence(tg.name))
}

// available records an available resource of a user.
func (t *Transport) available(_ context.Context, full jid.JID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.userLocked(full.Bare())
	u.resources[full.String()] = true
}

// unavailable records a resource going away; true when none is left.
func (t *Transport) unavailable(full jid.JID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[full.Bare().String()]
	if u == nil {
		return false
	}
	if full.Resourcepart() == "" {
		clear(u.resources)
	}
	delete(u.resources, full.String())
	return len(u.resources) == 0
}

func (t *Transport) userLocked(bare jid.JID) *user {
	u := t.users[bare.String()]
	if u == nil {
		u = &user{jid: bare, resources: map[string]bool{}, sessions: map[string]*session{}}
		t.users[bare.String()] = u
	}
	return u
}

// session returns the user's session on network, starting it when the
// user is registered there but has none; nil when not registered.
func (t *Transport) session(u jid.JID, network string) *session {
	t.mu.Lock()
	if x := t.users[u.String()]; x != nil && x.sessions[network] != nil {
		s := x.sessions[network]
		t.mu.Unlock()
		return s
	}
	t.mu.Unlock()
	reg, err := t.store.Registration(context.Background(), u.String(), network)
	if err != nil {
		return nil
	}
	return t.startSession(reg)
}

// startAll starts a session for every network the user registered with.
func (t *Transport) startAll(ctx context.Context, u jid.JID) {
	regs, err := t.store.Registrations(ctx, u.String())
	if err != nil {
		t.log.WithError(err).Error("reading registrations")
		return
	}
	for _, r := range regs {
		t.startSession(r)
	}
}

func (t *Transport) startSession(reg Registration) *session {
	net, ok := t.nets[reg.Network]
	if !ok {
		return nil
	}
	u, err := jid.Parse(reg.User)
	if err != nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return nil
	}
	x := t.userLocked(u)
	if s := x.sessions[reg.Network]; s != nil {
		return s
	}
	s := newSession(t, u, reg, net)
	x.sessions[reg.Network] = s
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		s.run()
	}()
	return s
}

// restart makes sure the user's session on network runs with the stored
// registration (after a new one: the nick or password may have changed).
func (t *Transport) restart(ctx context.Context, u jid.JID, network string) {
	reg, err := t.store.Registration(ctx, u.String(), network)
	if err != nil {
		return
	}
	t.mu.Lock()
	var cur *session
	if x := t.users[u.String()]; x != nil {
		cur = x.sessions[network]
	}
	t.mu.Unlock()
	if cur != nil && cur.reg == reg {
		return
	}
	if old := t.stopSession(u, network); old != nil {
		old.close() // the new one may reuse the nick
	}
	t.startSession(reg)
}

// stopSession tells the user's session on network to end and returns it.
func (t *Transport) stopSession(u jid.JID, network string) *session {
	t.mu.Lock()
	var s *session
	if x := t.users[u.String()]; x != nil {
		s = x.sessions[network]
		delete(x.sessions, network)
	}
	t.mu.Unlock()
	if s != nil {
		s.stop()
	}
	return s
}

func (t *Transport) stopAll(u jid.JID) {
	t.mu.Lock()
	var list []*session
	if x := t.users[u.String()]; x != nil {
		for n, s := range x.sessions {
			list = append(list, s)
			delete(x.sessions, n)
		}
	}
	t.mu.Unlock()
	for _, s := range list {
		s.stop()
	}
}

// stopSessions ends every IRC session (the link to the server is gone)
// and waits for them.
func (t *Transport) stopSessions() {
	t.mu.Lock()
	var list []*session
	for _, x := range t.users {
		for _, s := range x.sessions {
			list = append(list, s)
		}
	}
	t.users = map[string]*user{}
	t.mu.Unlock()
	for _, s := range list {
		s.stop()
	}
	for _, s := range list {
		s.close()
	}
}

// Status is what `gatehouse transport status` shows of a running
// transport.
type Status struct {
	User, Network, Nick string
	Connected           bool
}

// Sessions returns the running IRC sessions.
func (t *Transport) Sessions() []Status {
	t.mu.Lock()
	var list []*session
	for _, x := range t.users {
		for _, s := range x.sessions {
			list = append(list, s)
		}
	}
	t.mu.Unlock()
	out := make([]Status, 0, len(list))
	for _, s := range list {
		out = append(out, Status{User: s.user.String(), Network: s.net.Name, Nick: s.reg.Nick, Connected: s.isConnected()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User+out[i].Network < out[j].User+out[j].Network })
	return out
}
