// Package register implements XEP-0077 in-band registration: account
// creation before authentication (only when enabled, and limited per
// client address), and password changes by logged-in users.
//
// Account creation runs on the c2s stream before SASL, so c2s calls
// PreAuth; password changes arrive as ordinary iqs to the server through
// the bus. Cancelling an account in-band is refused: in a company the
// accounts belong to the administrators (`gatehouse user delete`).
//
// It must not import c2s, s2s, transports or other modules.
package register

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces.
const (
	NS        = "jabber:iq:register"
	NSFeature = "http://jabber.org/features/iq-register"
)

// Store is what registration needs of the accounts.
type Store interface {
	CreateUser(ctx context.Context, username string, c auth.Credentials) error
	SetCredentials(ctx context.Context, username string, c auth.Credentials) error
}

// Config configures registration.
type Config struct {
	Enabled           bool          // account creation before authentication
	MaxPerIP          int           // attempts one address may make per Window
	Window            time.Duration //
	MinPasswordLength int           // in characters
	SCRAMIterations   int
	// MaxTracked bounds the addresses remembered by the rate limit; when
	// full, new addresses are refused until old ones expire.
	MaxTracked int
}

// Module is the registration handler.
type Module struct {
	cfg   Config
	store Store
	log   logrus.FieldLogger
	now   func() time.Time

	mu    sync.Mutex
	tries map[string][]time.Time // per address, within the window
}

// New returns the module; now may be nil (time.Now).
func New(cfg Config, store Store, log logrus.FieldLogger, now func() time.Time) *Module {
	if now == nil {
		now = time.Now
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 100_000
	}
	return &Module{cfg: cfg, store: store, log: log, now: now, tries: make(map[string][]time.Time)}
}

// Register attaches the password change handler to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrHost, NS, "query", m.loggedIn)
	bus.AddFeature(hook.AddrHost, NS)
}

// Enabled reports whether accounts may be created in-band (the stream
// feature is offered then).
func (m *Module) Enabled() bool { return m.cfg.Enabled }

// form is the registration form of XEP-0077 §3.1 (the plain fields).
func form(registered bool, user string) *stanza.Element {
	q := stanza.NewElement(NS, "query")
	q.Append(stanza.NewElement(NS, "instructions").AppendText("Choose a username and password for use with this service."))
	if registered {
		q.Append(stanza.NewElement(NS, "registered"))
	}
	q.Append(stanza.NewElement(NS, "username").AppendText(user), stanza.NewElement(NS, "password"))
	return q
}

// PreAuth answers a jabber:iq:register request on a stream that has not
// authenticated (XEP-0077 §3.1), from address ip, for host.
func (m *Module) PreAuth(ctx context.Context, ip, host string, iq *stanza.Stanza) *stanza.Stanza {
	q := iq.Child(NS, "query")
	if iq.Kind != stanza.KindIQ || !iq.IsRequest() || q == nil {
		return stanza.Bounce(iq, stanza.NotAuthorized, "authenticate first")
	}
	if !m.cfg.Enabled {
		return stanza.Bounce(iq, stanza.NotAllowed, "in-band registration is disabled on this server")
	}
	if iq.Type == "get" {
		return iq.Result(form(false, ""))
	}
	if q.Child("", "remove") != nil {
		return stanza.Bounce(iq, stanza.NotAuthorized, "authenticate first")
	}
	if !m.allow(ip) {
		m.log.WithField("ip", ip).Warn("registration refused: rate limit")
		return stanza.Bounce(iq, stanza.ResourceConstraint, "too many registrations from your address; try again later")
	}
	user, password := q.ChildText("", "username"), q.ChildText("", "password")
	j, err := jid.New(user, host, "")
	if err != nil || user == "" || j.Localpart() != user {
		// Only the canonical form: what the user types is what they log in with.
		return stanza.Bounce(iq, stanza.NotAcceptable, "the username is not valid (use lower case, no spaces or @)")
	}
	creds, bad := m.credentials(password)
	if bad != nil {
		return stanza.Bounce(iq, stanza.NotAcceptable, bad.Error())
	}
	if err := m.store.CreateUser(ctx, user, creds); err != nil {
		if errors.Is(err, storage.ErrUserExists) {
			return stanza.Bounce(iq, stanza.Conflict, "that username is taken")
		}
		m.log.WithError(err).Error("registration failed")
		return stanza.Bounce(iq, stanza.InternalServerError, "")
	}
	m.log.WithFields(logrus.Fields{"user": j.String(), "ip": ip}).Info("account registered in-band")
	return iq.Result()
}

func (m *Module) credentials(password string) (auth.Credentials, error) {
	if utf8.RuneCountInString(password) < m.cfg.MinPasswordLength {
		return auth.Credentials{}, errors.New("the password must have at least " + strconv.Itoa(m.cfg.MinPasswordLength) + " characters")
	}
	c, err := auth.NewCredentials(password, m.cfg.SCRAMIterations)
	if err != nil {
		return auth.Credentials{}, errors.New("the password contains characters that are not allowed")
	}
	return c, nil
}

// allow counts an attempt from ip and reports whether it is within the
// limit. Every attempt counts, failed ones too, so guessing is as slow.
func (m *Module) allow(ip string) bool {
	now := m.now()
	cut := now.Add(-m.cfg.Window)
	m.mu.Lock()
	defer m.mu.Unlock()
	recent := m.tries[ip][:0]
	for _, t := range m.tries[ip] {
		if t.After(cut) {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(m.tries, ip)
		if len(m.tries) >= m.cfg.MaxTracked {
			m.prune(cut)
			if len(m.tries) >= m.cfg.MaxTracked {
				return false
			}
		}
	}
	if len(recent) >= m.cfg.MaxPerIP {
		m.tries[ip] = recent
		return false
	}
	m.tries[ip] = append(recent, now)
	return true
}

func (m *Module) prune(cut time.Time) {
	for ip, ts := range m.tries {
		if len(ts) == 0 || !ts[len(ts)-1].After(cut) {
			delete(m.tries, ip)
		}
	}
}

// loggedIn handles jabber:iq:register from an authenticated account:
// the form (showing it is registered) and password changes (§3.3).
func (m *Module) loggedIn(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if env.Src.Zone != router.ZoneLocal || st.From.Localpart() == "" || st.From.Domainpart() != st.To.Domainpart() {
		return stanza.Bounce(st, stanza.NotAllowed, "register with your own server")
	}
	user := st.From.Localpart()
	q := st.Payload()
	if st.Type == "get" {
		return st.Result(form(true, user))
	}
	if q.Child("", "remove") != nil {
		return stanza.Bounce(st, stanza.NotAllowed, "accounts are removed by the administrators")
	}
	if u := q.ChildText("", "username"); u != "" && u != user {
		return stanza.Bounce(st, stanza.NotAllowed, "you can change only your own password")
	}
	password := q.ChildText("", "password")
	if password == "" {
		return stanza.Bounce(st, stanza.BadRequest, "a new password is required")
	}
	creds, bad := m.credentials(password)
	if bad != nil {
		return stanza.Bounce(st, stanza.NotAcceptable, bad.Error())
	}
	if err := m.store.SetCredentials(ctx, user, creds); err != nil {
		m.log.WithError(err).Error("password change failed")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.log.WithField("user", st.From.Bare().String()).Info("password changed in-band")
	return st.Result()
}
