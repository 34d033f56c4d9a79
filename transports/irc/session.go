package irc

import (
	"context"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircevent"
	"github.com/ergochat/irc-go/ircfmt"
	"github.com/ergochat/irc-go/ircmsg"
	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// capabilities requested from IRC servers (IRCv3); refusal is not fatal.
var capabilities = []string{"echo-message", "message-tags", "server-time", "away-notify", "multi-prefix"}

// session is one user's connection to one IRC network.
type session struct {
	t    *Transport
	user jid.JID
	reg  Registration
	net  Network
	log  logrus.FieldLogger

	mu        sync.Mutex
	conn      *ircevent.Connection
	nc        net.Conn
	connected bool
	nick      string
	echo      bool
	monitor   bool
	watchCmd  bool              // WATCH (older servers) where there is no MONITOR
	contacts  map[string]string // folded nick → nick
	online    map[string]bool   // folded nick → online
	away      map[string]string // folded nick → away message
	rooms     map[string]*room  // folded channel → room
	pending   map[string][]string
	isonQ     [][]string // the nicks of ISON queries not answered yet, oldest first

	// ctx ends when the session is to end; quit is its Done channel.
	ctx    context.Context
	cancel context.CancelFunc
	quit   <-chan struct{}
	done   chan struct{}
}

// room is an IRC channel the user is in, from one or more resources.
type room struct {
	name      string
	resources map[string]jid.JID
	occupants map[string]occupant // folded nick → occupant
	names     map[string]occupant // collecting RPL_NAMREPLY
	topic     string
	joined    bool
}

type occupant struct {
	nick string
	role string
}

func newSession(t *Transport, u jid.JID, reg Registration, n Network) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{t: t, user: u, reg: reg, net: n,
		log:      t.log.WithFields(logrus.Fields{"user": u.String(), "network": n.Name}),
		contacts: map[string]string{}, online: map[string]bool{}, away: map[string]string{},
		rooms: map[string]*room{}, pending: map[string][]string{},
		ctx: ctx, cancel: cancel, quit: ctx.Done(), done: make(chan struct{})}
}

// stop tells the session to end (QUIT) without waiting: a connection
// attempt in progress is cut short.
func (s *session) stop() { s.cancel() }

// close ends the session and waits for it.
func (s *session) close() {
	s.cancel()
	<-s.done
}

func (s *session) isConnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// run connects and reconnects with exponential backoff until close.
func (s *session) run() {
	defer close(s.done)
	if cs, err := s.t.store.Contacts(context.Background(), s.reg.User, s.net.Name); err == nil {
		s.mu.Lock()
		for _, c := range cs {
			s.contacts[fold(c)] = c
		}
		s.mu.Unlock()
	}
	delay := s.t.cfg.ReconnectMin
	for {
		select {
		case <-s.quit:
			return
		default:
		}
		conn, lost := s.newConn()
		// Registration waits for the server's welcome; ending the session
		// closes the socket so that it need not time out.
		unwatch := context.AfterFunc(s.ctx, s.closeSocket)
		err := conn.Connect()
		unwatch()
		if err == nil && s.ctx.Err() != nil {
			conn.Quit()
			s.closeSocket()
			return
		}
		if err != nil {
			s.log.WithError(err).WithField("retry_in", delay.String()).Warn("IRC connection failed")
			s.closeSocket()
			if !s.sleep(delay) {
				return
			}
			delay = min(2*delay, s.t.cfg.ReconnectMax)
			continue
		}
		delay = s.t.cfg.ReconnectMin
		s.connectedTo(conn)
		select {
		case <-lost:
			s.log.Warn("IRC connection lost")
			s.closeSocket()
			s.disconnected()
			if !s.sleep(delay) {
				return
			}
		case <-s.quit:
			conn.Quit()
			select {
			case <-lost:
			case <-time.After(3 * time.Second):
			}
			s.closeSocket()
			s.disconnected()
			return
		}
	}
}

func (s *session) sleep(d time.Duration) bool {
	select {
	case <-s.quit:
		return false
	case <-time.After(d):
		return true
	}
}

func (s *session) closeSocket() {
	s.mu.Lock()
	nc := s.nc
	s.nc = nil
	s.mu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
}

// newConn returns a configured connection and a channel closed when it is
// lost.
func (s *session) newConn() (*ircevent.Connection, chan struct{}) {
	c := &ircevent.Connection{
		Server: s.net.Address, Nick: s.reg.Nick, User: "gatehouse", RealName: "Gatehouse IRC transport user",
		Password: s.reg.Password, RequestCaps: capabilities, UseTLS: s.net.TLS, TLSConfig: s.net.TLSConfig,
		Timeout: 30 * time.Second, KeepAlive: 2 * time.Minute, QuitMessage: "Gatehouse",
		Log: log.New(io.Discard, "", 0),
	}
	if c.UseTLS && c.TLSConfig == nil {
		host, _, _ := net.SplitHostPort(s.net.Address)
		c.TLSConfig = newTLSConfig(host)
	}
	c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer context.AfterFunc(s.ctx, cancel)()
		defer cancel()
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			s.mu.Lock()
			s.nc = nc
			s.mu.Unlock()
		}
		return nc, err
	}
	lost := make(chan struct{})
	var once sync.Once
	c.AddDisconnectCallback(func(ircmsg.Message) { once.Do(func() { close(lost) }) })
	for cmd, h := range map[string]func(ircmsg.Message){
		"PRIVMSG": s.onMessage, "NOTICE": s.onMessage,
		"JOIN": s.onJoin, "PART": s.onPart, "KICK": s.onKick, "QUIT": s.onQuit, "NICK": s.onNick,
		"TOPIC": s.onTopic, "AWAY": s.onAway,
		ircevent.RPL_TOPIC: s.onRplTopic, ircevent.RPL_NAMREPLY: s.onNames, ircevent.RPL_ENDOFNAMES: s.onEndOfNames,
		ircevent.RPL_ISON: s.onIson, "730": s.onMonOnline, "731": s.onMonOffline,
		"600": s.onWatch(true), "604": s.onWatch(true), "601": s.onWatch(false), "605": s.onWatch(false),
	} {
		c.AddCallback(cmd, h)
	}
	return c, lost
}

// connectedTo starts using a registered connection: presence watching
// and the channels the user is in.
func (s *session) connectedTo(c *ircevent.Connection) {
	_, monitor := c.ISupport()["MONITOR"]
	_, watch := c.ISupport()["WATCH"]
	watch = watch && !monitor
	_, echo := c.AcknowledgedCaps()["echo-message"]
	s.mu.Lock()
	s.conn, s.connected, s.nick, s.monitor, s.watchCmd, s.echo = c, true, c.CurrentNick(), monitor, watch, echo
	var chans []string
	for _, r := range s.rooms {
		r.joined = false
		chans = append(chans, r.name)
	}
	nicks := s.contactList()
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{"nick": c.CurrentNick(), "monitor": monitor, "echo": echo}).Info("IRC connected")
	s.t.send(&stanza.Stanza{Kind: stanza.KindPresence, From: s.t.gw, To: s.user})
	for _, ch := range chans {
		_ = c.Join(ch)
	}
	switch {
	case monitor:
		s.monitorAdd(c, nicks...)
	case watch:
		s.watchAdd(c, nicks...)
	default:
		go s.poll(c)
	}
}

// watchAdd adds nicks to the server's WATCH list; the server answers
// with RPL_NOWON/RPL_NOWOFF and later RPL_LOGON/RPL_LOGOFF.
func (s *session) watchAdd(c *ircevent.Connection, nicks ...string) {
	for len(nicks) > 0 {
		n := min(len(nicks), 20)
		args := make([]string, 0, n)
		for _, x := range nicks[:n] {
			args = append(args, "+"+x)
		}
		_ = c.Send("WATCH", strings.Join(args, " "))
		nicks = nicks[n:]
	}
}

func (s *session) contactList() []string {
	out := make([]string, 0, len(s.contacts))
	for _, n := range s.contacts {
		out = append(out, n)
	}
	return out
}

func (s *session) monitorAdd(c *ircevent.Connection, nicks ...string) {
	for len(nicks) > 0 {
		n := min(len(nicks), 20)
		_ = c.Send("MONITOR", "+", strings.Join(nicks[:n], ","))
		nicks = nicks[n:]
	}
}

// poll asks ISON for the contacts until the connection changes.
func (s *session) poll(c *ircevent.Connection) {
	tick := time.NewTicker(s.t.cfg.PollInterval)
	defer tick.Stop()
	for {
		s.mu.Lock()
		current := s.conn == c && s.connected
		s.mu.Unlock()
		if !current {
			return
		}
		s.ison(c)
		select {
		case <-tick.C:
		case <-s.quit:
			return
		}
	}
}

// ison asks which contacts are online, unless a query is still
// unanswered: servers with flood penalties (ngircd) would otherwise build a
// backlog that delays everything the user sends.
func (s *session) ison(c *ircevent.Connection) {
	s.mu.Lock()
	nicks := s.contactList()
	busy := len(s.isonQ) > 0
	if !busy && len(nicks) > 0 {
		s.isonQ = append(s.isonQ, nicks)
	}
	s.mu.Unlock()
	if !busy && len(nicks) > 0 {
		_ = c.Send("ISON", strings.Join(nicks, " "))
	}
}

// disconnected tells the user that contacts are offline now.
func (s *session) disconnected() {
	s.mu.Lock()
	s.conn, s.connected = nil, false
	s.isonQ = nil
	var gone []string
	for f, on := range s.online {
		if on {
			gone = append(gone, s.contacts[f])
		}
	}
	clear(s.online)
	for _, r := range s.rooms {
		r.joined = false
		clear(r.occupants)
	}
	s.mu.Unlock()
	for _, n := range gone {
		s.sendContact(n, "unavailable", "")
	}
	s.t.send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: s.t.gw, To: s.user})
}

func (s *session) sendContact(nick, typ, away string) {
	from, err := userJID(s.t.cfg.Domain, s.net.Name, nick)
	if err != nil {
		return
	}
	p := &stanza.Stanza{Kind: stanza.KindPresence, Type: typ, From: from, To: s.user}
	if away != "" && typ == "" {
		p.Append(stanza.NewElement("", "show").AppendText("away"), stanza.NewElement("", "status").AppendText(away))
	}
	s.t.send(p)
}

// contactPresence answers a probe for nick; nil while the state is not
// known yet (the answer to the presence query will tell).
func (s *session) contactPresence(nick string) *stanza.Stanza {
	s.mu.Lock()
	on, known := s.online[fold(nick)]
	away := s.away[fold(nick)]
	s.mu.Unlock()
	if !known {
		return nil
	}
	p := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"}
	if on {
		p.Type = ""
		if away != "" {
			p.Append(stanza.NewElement("", "show").AppendText("away"), stanza.NewElement("", "status").AppendText(away))
		}
	}
	return p
}

// setOnline records a contact's state and tells the user on a change.
func (s *session) setOnline(nick string, on bool) {
	f := fold(nick)
	s.mu.Lock()
	_, isContact := s.contacts[f]
	was, known := s.online[f]
	// The first answer tells only of contacts who are online: absent
	// presence already means offline.
	changed := isContact && (was != on || !known && on)
	if isContact {
		s.online[f] = on
		if !on {
			delete(s.away, f)
		}
	}
	away := s.away[f]
	s.mu.Unlock()
	if !changed {
		return
	}
	typ := "unavailable"
	if on {
		typ = ""
	}
	s.sendContact(nick, typ, away)
}

// watch adds a contact to presence watching.
func (s *session) watch(nick string) {
	s.mu.Lock()
	s.contacts[fold(nick)] = nick
	c, monitor, watch, connected := s.conn, s.monitor, s.watchCmd, s.connected
	s.mu.Unlock()
	switch {
	case !connected:
	case monitor:
		s.monitorAdd(c, nick)
	case watch:
		s.watchAdd(c, nick)
	default:
		s.ison(c)
	}
}

func (s *session) unwatch(nick string) {
	s.mu.Lock()
	delete(s.contacts, fold(nick))
	delete(s.online, fold(nick))
	c, monitor, watch := s.conn, s.monitor, s.watchCmd
	s.mu.Unlock()
	switch {
	case c == nil:
	case monitor:
		_ = c.Send("MONITOR", "-", nick)
	case watch:
		_ = c.Send("WATCH", "-"+nick)
	}
}

// say sends text to a nick or channel; for a channel without
// echo-message the message is reflected to the user's resources at once.
// It reports false when the connection is not up.
func (s *session) say(target, text string, orig *stanza.Stanza) bool {
	s.mu.Lock()
	c, connected, echo, nick := s.conn, s.connected, s.echo, s.nick
	if connected && echo && orig != nil {
		s.pending[fold(target)] = append(s.pending[fold(target)], orig.ID)
	}
	s.mu.Unlock()
	if !connected {
		return false
	}
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		rest, action := strings.CutPrefix(line, "/me ")
		for _, part := range splitLine(rest, maxText) {
			if action {
				_ = c.Action(target, part)
			} else {
				_ = c.Privmsg(target, part)
			}
		}
	}
	if isChannel(target) && !echo && orig != nil {
		s.toRoom(target, nick, text, orig.ID, time.Time{}, "")
	}
	return true
}

func (s *session) topic(channel, text string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		_ = c.Send("TOPIC", channel, text)
	}
}

// join puts a resource of the user into channel.
func (s *session) join(channel string, full jid.JID) {
	s.mu.Lock()
	r := s.rooms[fold(channel)]
	if r == nil {
		r = &room{name: channel, resources: map[string]jid.JID{}, occupants: map[string]occupant{}}
		s.rooms[fold(channel)] = r
	}
	_, already := r.resources[full.String()]
	r.resources[full.String()] = full
	joined, c, connected := r.joined, s.conn, s.connected
	s.mu.Unlock()
	switch {
	case joined:
		s.sendRoomState(r, full)
	case connected && !already:
		_ = c.Join(channel)
	}
}

// part takes a resource out of channel; the last one leaves it on IRC.
func (s *session) part(channel string, full jid.JID) {
	s.mu.Lock()
	r := s.rooms[fold(channel)]
	if r == nil {
		s.mu.Unlock()
		return
	}
	delete(r.resources, full.String())
	empty := len(r.resources) == 0
	if empty {
		delete(s.rooms, fold(channel))
	}
	c, nick := s.conn, s.nick
	s.mu.Unlock()
	s.t.send(s.selfPresence(r, nick, full, "unavailable"))
	if empty && c != nil {
		_ = c.Part(channel)
	}
}

func (s *session) room(channel string) (*room, []jid.JID, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[fold(channel)]
	if r == nil {
		return nil, nil, s.nick
	}
	out := make([]jid.JID, 0, len(r.resources))
	for _, j := range r.resources {
		out = append(out, j)
	}
	return r, out, s.nick
}

func mucX(role string, codes ...string) *stanza.Element {
	x := stanza.NewElement(nsMUCUser, "x")
	aff := "none"
	if role == "" {
		role = "participant"
	}
	if role == "none" {
		aff = "none"
	}
	x.Append(stanza.NewElement(nsMUCUser, "item", "affiliation", aff, "role", role))
	for _, c := range codes {
		x.Append(stanza.NewElement(nsMUCUser, "status", "code", c))
	}
	return x
}

func (s *session) occupantPresence(r *room, o occupant, to jid.JID, typ string, codes ...string) *stanza.Stanza {
	from, err := roomJID(s.t.cfg.Domain, s.net.Name, r.name, o.nick)
	if err != nil {
		return nil
	}
	role := o.role
	if typ == "unavailable" {
		role = "none"
	}
	return &stanza.Stanza{Kind: stanza.KindPresence, Type: typ, From: from, To: to, Children: []stanza.Node{{El: mucX(role, codes...)}}}
}

func (s *session) selfPresence(r *room, nick string, to jid.JID, typ string) *stanza.Stanza {
	return s.occupantPresence(r, occupant{nick: nick}, to, typ, "110")
}

// sendRoomState sends a joining resource the occupants, itself and the
// subject, in the order XEP-0045 §7.2 gives.
func (s *session) sendRoomState(r *room, to jid.JID) {
	s.mu.Lock()
	nick := s.nick
	occ := make([]occupant, 0, len(r.occupants))
	for f, o := range r.occupants {
		if f != fold(nick) {
			occ = append(occ, o)
		}
	}
	topic := r.topic
	s.mu.Unlock()
	for _, o := range occ {
		if p := s.occupantPresence(r, o, to, ""); p != nil {
			s.t.send(p)
		}
	}
	if p := s.selfPresence(r, nick, to, ""); p != nil {
		s.t.send(p)
	}
	from, err := roomJID(s.t.cfg.Domain, s.net.Name, r.name, "")
	if err != nil {
		return
	}
	s.t.send(&stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: from, To: to,
		Children: []stanza.Node{{El: stanza.NewElement("", "subject").AppendText(topic)}}})
}

// toRoom delivers a channel message to the user's resources in it.
func (s *session) toRoom(channel, nick, text, id string, stamp time.Time, msgid string) {
	_, res, _ := s.room(channel)
	from, err := roomJID(s.t.cfg.Domain, s.net.Name, channel, nick)
	if err != nil {
		return
	}
	for _, to := range res {
		m := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", ID: id, From: from, To: to}
		m.Append(stanza.NewElement("", "body").AppendText(text))
		if msgid != "" {
			m.Append(stanza.NewElement(nsSID, "stanza-id", "id", msgid, "by", from.Bare().String()))
		}
		addDelay(m, stamp, s.t.cfg.Domain)
		s.t.send(m)
	}
}

// addDelay marks a message the IRC server stamped well in the past
// (server-time), e.g. replayed history.
func addDelay(m *stanza.Stanza, stamp time.Time, by string) {
	if stamp.IsZero() || time.Since(stamp) < 10*time.Second {
		return
	}
	m.Append(stanza.NewElement(nsDelay, "delay", "from", by, "stamp", stamp.UTC().Format("2006-01-02T15:04:05.000Z")))
}

func serverTime(m ircmsg.Message) time.Time {
	if ok, v := m.GetTag("time"); ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	}
	return time.Time{}
}

func (s *session) isSelf(nick string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fold(nick) == fold(s.nick)
}

// onMessage handles PRIVMSG and NOTICE.
func (s *session) onMessage(m ircmsg.Message) {
	if len(m.Params) < 2 || !strings.Contains(m.Source, "!") {
		return // server notices
	}
	from, target, text := m.Nick(), m.Params[0], m.Params[1]
	if rest, ok := strings.CutPrefix(text, "\x01ACTION "); ok {
		text = "/me " + strings.TrimSuffix(rest, "\x01")
	} else if strings.HasPrefix(text, "\x01") {
		return // other CTCP
	}
	// Colours and bold are control characters XML cannot carry.
	text = ircfmt.Strip(text)
	_, msgid := m.GetTag("msgid")
	stamp := serverTime(m)
	self := s.isSelf(from)
	if isChannel(target) {
		id := msgid
		if self {
			// Our own message, echoed (echo-message): the reflection
			// carries the id the client gave it.
			s.mu.Lock()
			if q := s.pending[fold(target)]; len(q) > 0 {
				id, s.pending[fold(target)] = q[0], q[1:]
			}
			s.mu.Unlock()
		}
		s.toRoom(target, from, text, id, stamp, msgid)
		return
	}
	if self {
		return // the echo of our own private message: the client has it
	}
	fj, err := userJID(s.t.cfg.Domain, s.net.Name, from)
	if err != nil {
		return
	}
	typ := "chat"
	if m.Command == "NOTICE" {
		typ = "normal"
	}
	msg := &stanza.Stanza{Kind: stanza.KindMessage, Type: typ, ID: msgid, From: fj, To: s.user}
	msg.Append(stanza.NewElement("", "body").AppendText(text))
	addDelay(msg, stamp, s.t.cfg.Domain)
	s.t.send(msg)
	s.addContact(from)
	s.setOnline(from, true)
}

// addContact makes someone who wrote to the user a contact: stored, in the
// roster, watched.
func (s *session) addContact(nick string) {
	s.mu.Lock()
	_, known := s.contacts[fold(nick)]
	s.mu.Unlock()
	if known {
		return
	}
	if _, err := s.t.store.AddContact(context.Background(), s.reg.User, s.net.Name, nick); err != nil {
		s.log.WithError(err).Error("storing a contact")
	}
	s.t.populateRoster(context.Background(), s.user, s.net.Name, []string{nick}, false)
	s.watch(nick)
}

func (s *session) onJoin(m ircmsg.Message) {
	if len(m.Params) < 1 {
		return
	}
	ch, nick := m.Params[0], m.Nick()
	if s.isSelf(nick) {
		return // the occupants follow in RPL_NAMREPLY
	}
	r, res, _ := s.room(ch)
	if r == nil {
		return
	}
	o := occupant{nick: nick, role: "participant"}
	s.mu.Lock()
	r.occupants[fold(nick)] = o
	s.mu.Unlock()
	for _, to := range res {
		s.t.send(s.occupantPresence(r, o, to, ""))
	}
}

func (s *session) leftRoom(ch, nick string, codes ...string) {
	r, res, _ := s.room(ch)
	if r == nil {
		return
	}
	if s.isSelf(nick) {
		s.mu.Lock()
		delete(s.rooms, fold(ch))
		s.mu.Unlock()
		for _, to := range res {
			s.t.send(s.occupantPresence(r, occupant{nick: nick}, to, "unavailable", append(codes, "110")...))
		}
		return
	}
	s.mu.Lock()
	o, ok := r.occupants[fold(nick)]
	delete(r.occupants, fold(nick))
	s.mu.Unlock()
	if !ok {
		return
	}
	for _, to := range res {
		s.t.send(s.occupantPresence(r, o, to, "unavailable", codes...))
	}
}

func (s *session) onPart(m ircmsg.Message) {
	if len(m.Params) >= 1 {
		s.leftRoom(m.Params[0], m.Nick())
	}
}

func (s *session) onKick(m ircmsg.Message) {
	if len(m.Params) >= 2 {
		s.leftRoom(m.Params[0], m.Params[1], "307")
	}
}

func (s *session) onQuit(m ircmsg.Message) {
	nick := m.Nick()
	s.mu.Lock()
	var chans []string
	for _, r := range s.rooms {
		if _, ok := r.occupants[fold(nick)]; ok {
			chans = append(chans, r.name)
		}
	}
	s.mu.Unlock()
	for _, ch := range chans {
		s.leftRoom(ch, nick)
	}
	s.setOnline(nick, false)
}

func (s *session) onNick(m ircmsg.Message) {
	if len(m.Params) < 1 {
		return
	}
	old, nick := m.Nick(), m.Params[0]
	s.mu.Lock()
	if fold(old) == fold(s.nick) {
		s.nick = nick
	}
	type change struct {
		r   *room
		o   occupant
		res []jid.JID
	}
	var changes []change
	for _, r := range s.rooms {
		if o, ok := r.occupants[fold(old)]; ok {
			delete(r.occupants, fold(old))
			r.occupants[fold(nick)] = occupant{nick: nick, role: o.role}
			var res []jid.JID
			for _, j := range r.resources {
				res = append(res, j)
			}
			changes = append(changes, change{r, o, res})
		}
	}
	s.mu.Unlock()
	for _, c := range changes {
		for _, to := range c.res {
			// XEP-0045 §7.6: unavailable with 303 and the new nick, then
			// available under it.
			if p := s.occupantPresence(c.r, c.o, to, "unavailable", "303"); p != nil {
				p.Child(nsMUCUser, "x").Child(nsMUCUser, "item").SetAttr("nick", nick)
				s.t.send(p)
			}
			s.t.send(s.occupantPresence(c.r, occupant{nick: nick, role: c.o.role}, to, ""))
		}
	}
	s.setOnline(old, false)
	s.setOnline(nick, true)
}

func (s *session) onTopic(m ircmsg.Message) {
	if len(m.Params) < 2 {
		return
	}
	ch, text := m.Params[0], ircfmt.Strip(m.Params[1])
	r, res, _ := s.room(ch)
	if r == nil {
		return
	}
	s.mu.Lock()
	r.topic = text
	s.mu.Unlock()
	from, err := roomJID(s.t.cfg.Domain, s.net.Name, ch, m.Nick())
	if err != nil {
		return
	}
	for _, to := range res {
		s.t.send(&stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: from, To: to,
			Children: []stanza.Node{{El: stanza.NewElement("", "subject").AppendText(text)}}})
	}
}

func (s *session) onRplTopic(m ircmsg.Message) {
	if len(m.Params) < 3 {
		return
	}
	s.mu.Lock()
	if r := s.rooms[fold(m.Params[1])]; r != nil {
		r.topic = ircfmt.Strip(m.Params[2])
	}
	s.mu.Unlock()
}

// onNames collects RPL_NAMREPLY: "<me> <symbol> <channel> :<names>".
func (s *session) onNames(m ircmsg.Message) {
	if len(m.Params) < 4 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[fold(m.Params[2])]
	if r == nil {
		return
	}
	if r.names == nil {
		r.names = map[string]occupant{}
	}
	for _, n := range strings.Fields(m.Params[3]) {
		role := "participant"
		nick := strings.TrimLeft(n, "~&@%+")
		if p := n[:len(n)-len(nick)]; strings.ContainsAny(p, "~&@%") {
			role = "moderator"
		}
		if nick != "" {
			r.names[fold(nick)] = occupant{nick: nick, role: role}
		}
	}
}

// onEndOfNames completes a join: every resource in the room gets the
// room's state.
func (s *session) onEndOfNames(m ircmsg.Message) {
	if len(m.Params) < 2 {
		return
	}
	s.mu.Lock()
	r := s.rooms[fold(m.Params[1])]
	if r == nil || r.names == nil {
		s.mu.Unlock()
		return
	}
	r.occupants, r.names = r.names, nil
	wasJoined := r.joined
	r.joined = true
	var res []jid.JID
	for _, j := range r.resources {
		res = append(res, j)
	}
	s.mu.Unlock()
	if wasJoined {
		return // a NAMES query, not a join
	}
	for _, to := range res {
		s.sendRoomState(r, to)
	}
}

func (s *session) onIson(m ircmsg.Message) {
	on := map[string]bool{}
	if len(m.Params) >= 2 {
		for _, n := range strings.Fields(m.Params[1]) {
			on[fold(n)] = true
		}
	}
	s.log.WithField("params", m.Params).Debug("ISON reply")
	// Only the nicks asked about: a contact added since is not offline.
	s.mu.Lock()
	if len(s.isonQ) == 0 {
		s.mu.Unlock()
		return
	}
	nicks := s.isonQ[0]
	s.isonQ = s.isonQ[1:]
	s.mu.Unlock()
	for _, n := range nicks {
		s.setOnline(n, on[fold(n)])
	}
}

// onMonOnline: RPL_MONONLINE "<me> :nick!user@host,...".
func (s *session) onMonOnline(m ircmsg.Message) {
	if len(m.Params) < 2 {
		return
	}
	for _, t := range strings.Split(m.Params[1], ",") {
		s.setOnline(ircevent.ExtractNick(t), true)
	}
}

// onMonOffline: RPL_MONOFFLINE "<me> :nick,...".
func (s *session) onMonOffline(m ircmsg.Message) {
	if len(m.Params) < 2 {
		return
	}
	for _, n := range strings.Split(m.Params[1], ",") {
		s.setOnline(n, false)
	}
}

// onAway handles away-notify: "AWAY :message" or "AWAY" (back).
func (s *session) onAway(m ircmsg.Message) {
	nick := m.Nick()
	msg := ""
	if len(m.Params) > 0 {
		msg = m.Params[0]
	}
	f := fold(nick)
	s.mu.Lock()
	_, isContact := s.contacts[f]
	on := s.online[f]
	if msg == "" {
		delete(s.away, f)
	} else {
		s.away[f] = msg
	}
	s.mu.Unlock()
	if isContact && on {
		s.sendContact(nick, "", msg)
	}
}

// onWatch handles the WATCH numerics: RPL_LOGON (600) and RPL_NOWON (604)
// say online, RPL_LOGOFF (601) and RPL_NOWOFF (605) offline; all are
// "<me> <nick> <user> <host> <ts> :text".
func (s *session) onWatch(online bool) func(ircmsg.Message) {
	return func(m ircmsg.Message) {
		if len(m.Params) >= 2 && m.Params[1] != "*" {
			s.setOnline(m.Params[1], online)
		}
	}
}

// maxText is the most bytes of text sent in one PRIVMSG: a line is 512
// bytes with the command, target and the prefix the server adds when it
// relays it, so long messages go out in parts.
const maxText = 400

// splitLine cuts s into parts of at most max bytes, at a space where there
// is one in the second half of a part, never inside a UTF-8 sequence.
func splitLine(s string, max int) []string {
	var out []string
	for len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(s[:cut], ' '); sp > max/2 {
			cut = sp
		}
		out = append(out, s[:cut])
		s = strings.TrimLeft(s[cut:], " ")
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
