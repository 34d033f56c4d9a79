// Package directory reads the corporate directory over LDAP: it verifies
// passwords with a search-then-bind, and reads users (with their disabled
// state, manager and vCard attributes) and groups (nested ones resolved to
// their users). Sync (sync.go) mirrors what it reads into the server's
// database, so that the policy engine, the CLI and the roster see directory
// users and groups through the same interfaces as local ones.
package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"gatehouse/xmpp/config"
)

// Errors; returned errors wrap them.
var (
	// ErrInvalidCredentials: the directory refused the password.
	ErrInvalidCredentials = errors.New("directory: invalid credentials")
	// ErrNoUser: no directory entry for the user.
	ErrNoUser = errors.New("directory: no such user")
	// ErrDisabled: the entry matches the disabled filter.
	ErrDisabled = errors.New("directory: account disabled")
	// ErrUnavailable: the directory could not be reached or answered with
	// an error; nothing can be concluded about the user.
	ErrUnavailable = errors.New("directory: unavailable")
)

// User is a directory user.
type User struct {
	Name     string // the XMPP localpart (username_attr, lowercased)
	DN       string
	Disabled bool
	Manager  string // the manager's Name, "" when none (or not a user)
	VCard    VCard
	Groups   []string // names of the groups it is in, nesting resolved
	mgrDN    string
}

// VCard holds the attributes mapped to vCard fields.
type VCard struct {
	FullName, Given, Family, Title, Department, Phone, Email string
	Photo                                                    []byte // JPEG
}

// Group is a directory group with its users, nested groups flattened.
type Group struct {
	Name    string
	DN      string
	Members []string // user Names, sorted
}

// Snapshot is everything read in one pass.
type Snapshot struct {
	Users  []User
	Groups []Group
}

// Directory is a pool of connections to one LDAP server. It is safe for
// concurrent use.
type Directory struct {
	cfg      config.Directory
	bindPW   string
	tls      *tls.Config
	addr     string
	ldaps    bool
	pool     chan *ldap.Conn
	poolSize int

	mu     sync.Mutex
	closed bool
}

// New prepares a directory client; it does not connect yet.
func New(cfg config.Directory) (*Directory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("directory: url %q: must be ldap://host:port or ldaps://host:port", cfg.URL)
	}
	d := &Directory{cfg: cfg, addr: u.Host, ldaps: u.Scheme == "ldaps", poolSize: max(1, cfg.PoolSize)}
	if _, _, err := net.SplitHostPort(d.addr); err != nil {
		port := "389"
		if d.ldaps {
			port = "636"
		}
		d.addr = net.JoinHostPort(u.Host, port)
	}
	host, _, _ := net.SplitHostPort(d.addr)
	d.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("directory: ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("directory: ca_file %s: no PEM certificates in it", cfg.CAFile)
		}
		d.tls.RootCAs = pool
	}
	if cfg.BindPasswordFile != "" {
		b, err := os.ReadFile(cfg.BindPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("directory: bind_password_file: %w", err)
		}
		d.bindPW = strings.TrimRight(string(b), "\r\n")
	}
	d.pool = make(chan *ldap.Conn, d.poolSize)
	return d, nil
}

// Close closes the pooled connections.
func (d *Directory) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	for {
		select {
		case c := <-d.pool:
			_ = c.Close()
		default:
			return nil
		}
	}
}

// dial opens a connection (TLS as configured), unbound.
func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	timeout := d.cfg.Timeout.D()
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	dialer := &net.Dialer{Timeout: timeout}
	var (
		c   *ldap.Conn
		err error
	)
	if d.ldaps {
		c, err = ldap.DialURL("ldaps://"+d.addr, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(d.tls))
	} else {
		c, err = ldap.DialURL("ldap://"+d.addr, ldap.DialWithDialer(dialer))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to %s: %v", ErrUnavailable, d.addr, err)
	}
	c.SetTimeout(d.cfg.Timeout.D())
	if !d.ldaps && d.cfg.StartTLS {
		if err := c.StartTLS(d.tls); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w: StartTLS with %s: %v", ErrUnavailable, d.addr, err)
		}
	}
	return c, nil
}

// serviceConn returns a pooled connection bound as the service account.
func (d *Directory) serviceConn(ctx context.Context) (*ldap.Conn, error) {
	select {
	case c := <-d.pool:
		if !c.IsClosing() {
			return c, nil
		}
		_ = c.Close()
	default:
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	if d.cfg.BindDN != "" {
		if err := c.Bind(d.cfg.BindDN, d.bindPW); err != nil {
			_ = c.Close()
			if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				return nil, fmt.Errorf("%w: the service account %s was refused (check bind_dn and bind_password_file)", ErrUnavailable, d.cfg.BindDN)
			}
			return nil, fmt.Errorf("%w: service bind: %v", ErrUnavailable, err)
		}
	}
	return c, nil
}

// release returns c to the pool, or closes it after an error.
func (d *Directory) release(c *ldap.Conn, err error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || closed || c.IsClosing() {
		_ = c.Close()
		return
	}
	select {
	case d.pool <- c:
	default:
		_ = c.Close()
	}
}

func (d *Directory) userAttrs() []string {
	v := d.cfg.VCard
	attrs := []string{d.cfg.UsernameAttr, d.cfg.ManagerAttr}
	for _, a := range []string{v.FullName, v.Given, v.Family, v.Title, v.Department, v.Phone, v.Email, v.Photo} {
		if a != "" {
			attrs = append(attrs, a)
		}
	}
	return attrs
}

// search runs one search with the service connection.
func (d *Directory) search(ctx context.Context, base, filter string, attrs []string) ([]*ldap.Entry, error) {
	c, err := d.serviceConn(ctx)
	if err != nil {
		return nil, err
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0,
		int(d.cfg.Timeout.D()/time.Second), false, filter, attrs, nil)
	res, err := c.SearchWithPaging(req, 500)
	d.release(c, err)
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: search %s under %s: %v", ErrUnavailable, filter, base, err)
	}
	return res.Entries, nil
}

func (d *Directory) userFilter(name string) string {
	f := strings.ReplaceAll(d.cfg.UserFilter, "%s", name)
	return f
}

// lookup finds the user's entry.
func (d *Directory) lookup(ctx context.Context, name string) (*ldap.Entry, error) {
	es, err := d.search(ctx, d.cfg.BaseDN, d.userFilter(ldap.EscapeFilter(name)), d.userAttrs())
	if err != nil {
		return nil, err
	}
	switch len(es) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoUser, name)
	case 1:
		return es[0], nil
	}
	return nil, fmt.Errorf("%w: %d entries match user %q; make user_filter unique", ErrUnavailable, len(es), name)
}

// disabled reports whether dn matches the disabled filter.
func (d *Directory) disabled(ctx context.Context, dn string) (bool, error) {
	if d.cfg.DisabledFilter == "" {
		return false, nil
	}
	c, err := d.serviceConn(ctx)
	if err != nil {
		return false, err
	}
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1,
		int(d.cfg.Timeout.D()/time.Second), false, d.cfg.DisabledFilter, []string{"1.1"}, nil)
	res, err := c.Search(req)
	d.release(c, err)
	if err != nil {
		return false, fmt.Errorf("%w: disabled check of %s: %v", ErrUnavailable, dn, err)
	}
	return len(res.Entries) > 0, nil
}

// Authenticate verifies name's password: search for the entry with the
// service account, then bind as it on a fresh connection.
func (d *Directory) Authenticate(ctx context.Context, name, password string) error {
	if password == "" {
		// An empty password is an unauthenticated bind (RFC 4513 §5.1.2),
		// which many servers "accept": never let it through.
		return ErrInvalidCredentials
	}
	e, err := d.lookup(ctx, name)
	if err != nil {
		return err
	}
	if dis, err := d.disabled(ctx, e.DN); err != nil {
		return err
	} else if dis {
		return fmt.Errorf("%w: %s", ErrDisabled, name)
	}
	c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Bind(e.DN, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return ErrInvalidCredentials
		}
		return fmt.Errorf("%w: bind as %s: %v", ErrUnavailable, e.DN, err)
	}
	return nil
}

// Check reports whether name exists and is enabled (no password): ErrNoUser,
// ErrDisabled, ErrUnavailable or nil.
func (d *Directory) Check(ctx context.Context, name string) error {
	e, err := d.lookup(ctx, name)
	if err != nil {
		return err
	}
	if dis, err := d.disabled(ctx, e.DN); err != nil {
		return err
	} else if dis {
		return fmt.Errorf("%w: %s", ErrDisabled, name)
	}
	return nil
}

// User reads one user with its groups and manager (for `directory test`).
func (d *Directory) User(ctx context.Context, name string) (*User, error) {
	snap, err := d.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	for i := range snap.Users {
		if snap.Users[i].Name == strings.ToLower(name) {
			u := snap.Users[i]
			return &u, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoUser, name)
}

// Snapshot reads all users and groups.
func (d *Directory) Snapshot(ctx context.Context) (*Snapshot, error) {
	es, err := d.search(ctx, d.cfg.BaseDN, d.userFilter("*"), d.userAttrs())
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{}
	byDN := map[string]*User{}
	for _, e := range es {
		name := strings.ToLower(e.GetAttributeValue(d.cfg.UsernameAttr))
		if name == "" {
			continue
		}
		v := d.cfg.VCard
		get := func(a string) string {
			if a == "" {
				return ""
			}
			return e.GetAttributeValue(a)
		}
		u := User{Name: name, DN: e.DN, mgrDN: get(d.cfg.ManagerAttr), VCard: VCard{
			FullName: get(v.FullName), Given: get(v.Given), Family: get(v.Family), Title: get(v.Title),
			Department: get(v.Department), Phone: get(v.Phone), Email: get(v.Email)}}
		if v.Photo != "" {
			u.VCard.Photo = e.GetRawAttributeValue(v.Photo)
		}
		snap.Users = append(snap.Users, u)
	}
	for i := range snap.Users {
		byDN[normDN(snap.Users[i].DN)] = &snap.Users[i]
	}
	if d.cfg.DisabledFilter != "" {
		dis, err := d.search(ctx, d.cfg.BaseDN, "(&"+d.userFilter("*")+d.cfg.DisabledFilter+")", []string{"1.1"})
		if err != nil {
			return nil, err
		}
		for _, e := range dis {
			if u := byDN[normDN(e.DN)]; u != nil {
				u.Disabled = true
			}
		}
	}
	for i := range snap.Users {
		if m := byDN[normDN(snap.Users[i].mgrDN)]; m != nil {
			snap.Users[i].Manager = m.Name
		}
	}
	groups, err := d.groups(ctx, byDN)
	if err != nil {
		return nil, err
	}
	snap.Groups = groups
	for _, g := range groups {
		for _, m := range g.Members {
			for i := range snap.Users {
				if snap.Users[i].Name == m {
					snap.Users[i].Groups = append(snap.Users[i].Groups, g.Name)
				}
			}
		}
	}
	sort.Slice(snap.Users, func(i, j int) bool { return snap.Users[i].Name < snap.Users[j].Name })
	return snap, nil
}

// groups reads the groups and resolves nesting to users.
func (d *Directory) groups(ctx context.Context, users map[string]*User) ([]Group, error) {
	base := d.cfg.GroupBaseDN
	if base == "" {
		base = d.cfg.BaseDN
	}
	attrs := append([]string{d.cfg.GroupNameAttr}, d.cfg.MemberAttrs...)
	es, err := d.search(ctx, base, d.cfg.GroupFilter, attrs)
	if err != nil {
		return nil, err
	}
	type raw struct {
		name, dn string
		members  []string
	}
	byDN := map[string]*raw{}
	var all []*raw
	for _, e := range es {
		r := &raw{name: e.GetAttributeValue(d.cfg.GroupNameAttr), dn: e.DN}
		for _, a := range d.cfg.MemberAttrs {
			for _, m := range e.GetAttributeValues(a) {
				r.members = append(r.members, normDN(m))
			}
		}
		if r.name == "" {
			continue
		}
		byDN[normDN(e.DN)] = r
		all = append(all, r)
	}
	var out []Group
	for _, r := range all {
		set := map[string]bool{}
		seen := map[string]bool{}
		var walk func(g *raw)
		walk = func(g *raw) {
			if seen[g.dn] { // cycles in the directory must not hang us
				return
			}
			seen[g.dn] = true
			for _, m := range g.members {
				if u := users[m]; u != nil {
					set[u.Name] = true
				} else if sub := byDN[m]; sub != nil {
					walk(sub)
				}
			}
		}
		walk(r)
		g := Group{Name: r.name, DN: r.dn}
		for n := range set {
			g.Members = append(g.Members, n)
		}
		sort.Strings(g.Members)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// normDN canonicalises a DN for comparison (attribute names and values
// are case-insensitive in the schemas we match; spacing varies).
func normDN(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	parts := make([]string, 0, len(p.RDNs))
	for _, r := range p.RDNs {
		as := make([]string, 0, len(r.Attributes))
		for _, a := range r.Attributes {
			as = append(as, strings.ToLower(a.Type)+"="+strings.ToLower(a.Value))
		}
		sort.Strings(as)
		parts = append(parts, strings.Join(as, "+"))
	}
	return strings.Join(parts, ",")
}
