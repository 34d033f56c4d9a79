package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Directory is where the Gate learns groups and managers. *storage.DB
// implements it; LDAP will later.
type Directory interface {
	Groups(ctx context.Context) ([]string, error)
	GroupMembers(ctx context.Context, group string) ([]string, error)
	// Manager returns the account name of user's manager, "" if none.
	Manager(ctx context.Context, user string) (string, error)
}

// Forwarder routes the notices the Gate sends (router.Router does).
type Forwarder interface {
	Forward(ctx context.Context, env *router.Envelope) error
}

// GateOptions wire a Gate.
type GateOptions struct {
	Hosts     []string // hosted domains: only their users have groups and managers
	Directory Directory
	Forwarder Forwarder
	Scanner   Scanner // nil: no scanning (a policy that enables it is refused)
	// ScanFailOpen lets a file through when it cannot be scanned; the
	// default refuses it.
	ScanFailOpen bool
	// ScanMaxBytes: an in-band bytestream is scanned as a whole up to this
	// size, then chunk by chunk with the tail of the previous data.
	ScanMaxBytes int
	// DirectoryRefresh is how often group memberships are re-read; 0
	// re-reads them for every crossing (tests).
	DirectoryRefresh time.Duration
	// MaxTransfers bounds the in-band bytestreams tracked at once.
	MaxTransfers int
	// MaxDisclaimerPairs bounds the pairs whose last notice is remembered.
	MaxDisclaimerPairs int
	// MaxUploads bounds the uploads whose size and type are remembered
	// for their links; default 100,000.
	MaxUploads int
	// Attribute names the local account behind an address that is not an
	// account but speaks for one (a group-chat nick: room@conference/Nick),
	// so that user and group rules apply to what a user says outside
	// through a room. nil: such addresses match no user or group rule.
	Attribute func(jid.JID) (jid.JID, bool)
	// Fetcher gets files behind links for scanning (scan.links); nil:
	// links are not fetched.
	Fetcher LinkFetcher
	Now     func() time.Time
	Log     logrus.FieldLogger
}

// Gate is the boundary: it implements router.Boundary with the current
// policy, and does what decisions imply (notices, redaction, scanning).
type Gate struct {
	opts  GateOptions
	hosts map[string]bool
	cur   atomic.Pointer[state]

	pool      sync.Pool // *scratch
	refreshMu sync.Mutex
	reloadMu  sync.Mutex

	disc    *disclaimers
	ibb     *ibbTracker
	uploads *uploadIndex
}

// state is a policy with the group memberships it refers to.
type state struct {
	p *Policy
	m atomic.Pointer[membership]
}

// membership maps account names to the policy's group indices.
type membership struct {
	users  map[string]bitset
	loaded time.Time
}

// Errors of the Gate.
var (
	ErrDirectory = errors.New("policy: reading groups failed")
)

// NewGate returns a Gate enforcing p (nil: an empty policy that allows
// everything).
func NewGate(ctx context.Context, p *Policy, opts GateOptions) (*Gate, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Log = l
	}
	if opts.ScanMaxBytes <= 0 {
		opts.ScanMaxBytes = 1 << 20
	}
	if opts.MaxTransfers <= 0 {
		opts.MaxTransfers = 1024
	}
	if opts.MaxDisclaimerPairs <= 0 {
		opts.MaxDisclaimerPairs = 100_000
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = 100_000
	}
	g := &Gate{opts: opts, hosts: map[string]bool{}}
	for _, h := range opts.Hosts {
		g.hosts[h] = true
	}
	g.pool.New = func() any { return &scratch{} }
	g.disc = newDisclaimers(opts.MaxDisclaimerPairs)
	g.ibb = newIBBTracker(opts.MaxTransfers, opts.ScanMaxBytes)
	g.uploads = newUploadIndex(opts.MaxUploads)
	if p == nil {
		p = Empty()
	}
	if err := g.Swap(ctx, p); err != nil {
		return nil, err
	}
	return g, nil
}

// Empty returns the policy in force when none is configured: everything
// is allowed, decisions carry rule "default" and version "none".
func Empty() *Policy {
	return &Policy{version: "none", groupIdx: map[string]int{}}
}

// Policy returns the policy in force.
func (g *Gate) Policy() *Policy { return g.cur.Load().p }

// Swap puts p in force. Group memberships are loaded first: if that fails
// the old policy stays, so a reload is all or nothing.
func (g *Gate) Swap(ctx context.Context, p *Policy) error {
	if p.scan != nil && g.opts.Scanner == nil {
		return fmt.Errorf("policy: %s enables virus scanning but no scanner is configured", p.version)
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	m, err := g.loadMembership(ctx, p)
	if err != nil {
		return err
	}
	s := &state{p: p}
	s.m.Store(m)
	g.cur.Store(s)
	return nil
}

func (g *Gate) loadMembership(ctx context.Context, p *Policy) (*membership, error) {
	m := &membership{users: map[string]bitset{}, loaded: g.opts.Now()}
	if len(p.groups) == 0 || g.opts.Directory == nil {
		return m, nil
	}
	exist, err := g.opts.Directory.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDirectory, err)
	}
	for i, name := range p.groups {
		if !slices.Contains(exist, name) {
			continue // a group the rules name may be created later
		}
		members, err := g.opts.Directory.GroupMembers(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%w: group %q: %w", ErrDirectory, name, err)
		}
		for _, u := range members {
			b := m.users[u]
			b.set(i)
			m.users[u] = b
		}
	}
	return m, nil
}

// MissingGroups returns the groups p names that the directory does not
// have (for warnings: such rules match nobody until the group exists).
func MissingGroups(ctx context.Context, p *Policy, dir Directory) ([]string, error) {
	if len(p.groups) == 0 || dir == nil {
		return nil, nil
	}
	exist, err := dir.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDirectory, err)
	}
	var out []string
	for _, g := range p.groups {
		// Strings in CEL expressions may or may not be group names.
		if !slices.Contains(exist, g) && !p.celGroups[g] {
			out = append(out, g)
		}
	}
	return out, nil
}

// members returns the current memberships, re-reading them when they are
// older than DirectoryRefresh. One crossing re-reads; the others meanwhile
// use what is there.
func (g *Gate) members(ctx context.Context, s *state, now time.Time) *membership {
	m := s.m.Load()
	if now.Sub(m.loaded) < g.opts.DirectoryRefresh || len(s.p.groups) == 0 || !g.refreshMu.TryLock() {
		return m
	}
	defer g.refreshMu.Unlock()
	nm, err := g.loadMembership(ctx, s.p)
	if err != nil {
		// Keep deciding with what we had; try again next period.
		g.opts.Log.WithError(err).Warn("policy: refreshing group memberships failed; using the previous ones")
		nm = &membership{users: m.users, loaded: now}
	}
	s.m.Store(nm)
	return nm
}

// Cross implements router.Boundary.
func (g *Gate) Cross(ctx context.Context, env *router.Envelope) (router.Decision, error) {
	s := g.cur.Load()
	if env.Src.Zone == router.ZoneLocal && env.Dst.Zone == router.ZoneLocal {
		return g.crossInternal(ctx, s, env), nil
	}
	p := s.p
	st := env.Stanza
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := g.crossing(ctx, s, env, sc)
	now := x.now

	p.prepare(st, x, sc)
	if len(sc.offers) > 0 {
		g.uploads.fill(sc.offers)
		g.ibb.update(st, sc.offers, now, p.scan != nil)
	}
	p.evaluate(st, x, sc)
	o := &sc.out

	dec := router.Decision{Verdict: o.verdict, PolicyVersion: p.version}
	var virus, scan string
	var scanErr error
	for i := range sc.offers {
		if sc.offers[i].ScannedAtUpload {
			scan = "clean (scanned at upload)"
		}
	}
	if o.verdict == router.Allow && o.scan {
		virus, scanErr = g.scanOffers(ctx, p, st, sc.offers)
		switch {
		case scanErr != nil:
			scan = "unscanned: " + scanErr.Error()
		case virus != "":
			scan = "infected: " + virus
		case hasData(sc.offers) || p.scanLinks && g.opts.Fetcher != nil && hasLink(sc.offers):
			scan = "clean"
		}
		switch {
		case scanErr != nil && !g.opts.ScanFailOpen:
			g.opts.Log.WithError(scanErr).Warn("policy: file could not be scanned; refusing it (on_scan_failure: deny)")
			o.acted = append(o.acted, p.scan)
			dec.Verdict = router.Deny
			dec.Condition = stanza.ResourceConstraint
			dec.Text = fmt.Sprintf("the file could not be checked for malware; try again later (rule %s)", p.scan.id)
		case scanErr != nil:
			g.opts.Log.WithError(scanErr).Warn("policy: file could not be scanned; letting it through (on_scan_failure: allow)")
		case virus != "":
			o.acted = append(o.acted, p.scan)
			o.verdict, o.deny = router.Deny, p.scan
		}
	}
	if o.verdict == router.Deny {
		dec = p.decide(o, x.dir)
		if virus != "" && x.dir == Outbound {
			dec.Text = fmt.Sprintf("%s: %s (rule %s)", strings.TrimSuffix(p.scan.text, " (rule "+p.scan.id+")"), virus, p.scan.id)
		}
	}
	if dec.Verdict == router.Deny && len(sc.offers) > 0 {
		g.ibb.drop(st, sc.offers)
	}

	if dec.Verdict == router.Allow && o.redact {
		if red, ok := p.redact(st, o.acted, sc); ok {
			env.Stanza = red
		}
	}
	if dec.Verdict == router.Allow && o.disclaimer && g.disc.due(x.local, x.remote, now, p.disclaimerPeriod) {
		o.acted = append(o.acted, p.disclaimer)
		g.sendDisclaimers(ctx, p, x, st)
	}
	dec.Rule = ruleList(o.acted, o.defaultDeny)
	dec.Scan = scan
	if dec.Verdict == router.Deny && x.dir == Outbound && st.Kind == stanza.KindPresence && st.Type == "subscribe" {
		g.subscriptionRefused(ctx, p, x, dec)
	}
	for _, r := range o.acted {
		// Hold rules notified when the message was held.
		if r.notifies() && r.action != ActHold {
			g.notify(ctx, p, r, x, st, sc, virus, "")
		}
	}
	return dec, nil
}

// crossing fills sc's crossing for env, a border crossing. It lives in
// the pooled scratch so that it does not escape to the heap.
func (g *Gate) crossing(ctx context.Context, s *state, env *router.Envelope, sc *scratch) *crossing {
	st := env.Stanza
	x := &sc.x
	x.now = g.opts.Now()
	if env.Src.Zone == router.ZoneLocal {
		x.dir, x.zone, x.local, x.remote = Outbound, env.Dst.Zone, st.From, st.To
	} else {
		x.dir, x.zone, x.local, x.remote = Inbound, env.Src.Zone, st.To, st.From
	}
	if !g.account(x.local) && g.opts.Attribute != nil {
		if real, ok := g.opts.Attribute(x.local); ok && g.account(real) {
			x.local = real.Bare()
		}
	}
	if g.account(x.local) {
		sc.groups = g.members(ctx, s, x.now).users[x.local.Localpart()]
	} else {
		// Not an account (the server itself, a MUC room): no user or
		// group selector can match it.
		x.local = jid.JID{}
	}
	x.groups = &sc.groups
	return x
}

// Hold says that an outbound message must wait for a reviewer.
type Hold struct {
	Rule          string // the first hold rule that acted
	Rules         string // every rule that acted, as in a decision
	PolicyVersion string
}

// CheckHold reports whether an outbound message from a local session must
// be held for review: a hold rule acts and no rule denies it. It has no
// side effects: the server keeps the message, and when a reviewer
// releases it, it crosses through Cross, where hold rules act as flags.
// env.Dst must name the destination's zone.
func (g *Gate) CheckHold(ctx context.Context, env *router.Envelope) (Hold, bool) {
	s := g.cur.Load()
	p := s.p
	if !p.hasHold || env.Src.Zone != router.ZoneLocal || env.Dst.Zone == router.ZoneLocal || env.Dst.Zone == router.ZoneNone ||
		env.Stanza.Kind != stanza.KindMessage {
		return Hold{}, false
	}
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := g.crossing(ctx, s, env, sc)
	p.prepare(env.Stanza, x, sc)
	p.evaluate(env.Stanza, x, sc)
	o := &sc.out
	if o.verdict != router.Allow || !o.hold {
		return Hold{}, false
	}
	h := Hold{Rules: ruleList(o.acted, false), PolicyVersion: p.version}
	for _, r := range o.acted {
		if r.action == ActHold {
			h.Rule = r.id
			break
		}
	}
	return h, true
}

// NotifyHold sends the notices of the hold rules that hold env's message,
// with note (how to review it) appended.
func (g *Gate) NotifyHold(ctx context.Context, env *router.Envelope, note string) {
	s := g.cur.Load()
	p := s.p
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := g.crossing(ctx, s, env, sc)
	p.prepare(env.Stanza, x, sc)
	p.evaluate(env.Stanza, x, sc)
	for _, r := range sc.out.acted {
		if r.action == ActHold && r.notifies() {
			g.notify(ctx, p, r, x, env.Stanza, sc, "", note)
		}
	}
}

// crossInternal decides a stanza between two local parties: only the
// information barriers apply, and only when both are accounts.
func (g *Gate) crossInternal(ctx context.Context, s *state, env *router.Envelope) router.Decision {
	p := s.p
	allow := router.Decision{Verdict: router.Allow, Rule: DefaultRule, PolicyVersion: p.version}
	st := env.Stanza
	if len(p.barriers) == 0 || !g.account(st.From) || !g.account(st.To) {
		return allow
	}
	now := g.opts.Now()
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := &sc.x
	x.now, x.dir, x.zone, x.local, x.remote = now, Internal, router.ZoneLocal, st.From, st.To
	m := g.members(ctx, s, now)
	sc.groups, sc.peer = m.users[st.From.Localpart()], m.users[st.To.Localpart()]
	x.groups, x.peer = &sc.groups, &sc.peer
	x.kinds = classify(st)
	p.evaluateBarriers(x, sc)
	o := &sc.out
	dec := p.decide(o, Internal)
	dec.Rule = ruleList(o.acted, false)
	for _, r := range o.acted {
		if r.notifies() {
			g.notify(ctx, p, r, x, st, sc, "", "")
		}
	}
	return dec
}

// account reports whether j is an account of a hosted domain.
func (g *Gate) account(j jid.JID) bool {
	return j.Localpart() != "" && g.hosts[j.Domainpart()]
}

// decide turns an outcome into the router's decision (without the rule
// list, which the caller completes).
func (p *Policy) decide(o *outcome, dir Direction) router.Decision {
	dec := router.Decision{Verdict: o.verdict, PolicyVersion: p.version}
	if o.verdict != router.Deny {
		return dec
	}
	switch {
	case o.defaultDeny:
		dec.Condition = stanza.PolicyViolation
		dec.Text = p.defaultDenyText
		if dir == Inbound {
			dec.Text = defaultRemoteText
		}
	default:
		dec.Condition = o.deny.cond
		dec.Text = o.deny.text
		if dir == Inbound {
			dec.Text = o.deny.remoteText
		}
	}
	return dec
}

// ruleList names the rules that acted, in order ("default" when none).
func ruleList(acted []*rule, defaultDeny bool) string {
	switch {
	case len(acted) == 0:
		return DefaultRule
	case len(acted) == 1 && !defaultDeny:
		return acted[0].id
	}
	ids := make([]string, 0, len(acted)+1)
	for _, r := range acted {
		ids = append(ids, r.id)
	}
	if defaultDeny {
		ids = append(ids, DefaultRule)
	}
	return strings.Join(ids, ",")
}

// scanOffers scans the inline content of the offers and returns the first
// malware name found.
func (g *Gate) scanOffers(ctx context.Context, p *Policy, st *stanza.Stanza, offers []FileOffer) (string, error) {
	for i := range offers {
		o := &offers[i]
		data := o.Data
		if len(data) == 0 {
			if !p.scanLinks || g.opts.Fetcher == nil || !fetchable(o) {
				continue
			}
			// The file behind an outside link: fetched (bounded in size
			// and time by the fetcher) and scanned before the link
			// crosses. A file that cannot be fetched is a scan failure.
			b, err := g.opts.Fetcher.Fetch(ctx, o.URL)
			if err != nil {
				return "", fmt.Errorf("%w: fetching %s: %w", ErrScan, o.URL, err)
			}
			if o.Size < 0 {
				o.Size = int64(len(b))
			}
			name, err := g.opts.Scanner.Scan(ctx, b)
			if err != nil || name != "" {
				return name, err
			}
			continue
		}
		if o.Mechanism == MechIBB {
			data = g.ibb.window(st, o)
		}
		name, err := g.opts.Scanner.Scan(ctx, data)
		if err != nil || name != "" {
			return name, err
		}
	}
	return "", nil
}

// sendDisclaimers tells both sides that the conversation is recorded: the
// local party gets a notice from the server; the outside party gets it in
// the same conversation, from the local party's address, because a
// transport (IRC, ...) may relay nothing but messages from the addresses
// it knows. Both carry BoundaryDone: they are notices of the boundary.
func (g *Gate) sendDisclaimers(ctx context.Context, p *Policy, x *crossing, st *stanza.Stanza) {
	if x.local.Localpart() == "" {
		return
	}
	localBare := x.local.Bare()
	server := x.local.Domain()
	toLocal := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat", From: server, To: localBare}
	toLocal.Append(stanza.NewElement("", "body").AppendText(fmt.Sprintf("Notice about %s: %s", x.remote.Bare().String(), p.disclaimerText)),
		noticeElement(p, p.disclaimer, "notice"))
	remoteTo := st.To
	if x.dir == Inbound {
		remoteTo = st.From
	}
	toRemote := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat", From: localBare, To: remoteTo}
	toRemote.Append(stanza.NewElement("", "body").AppendText("[automatic notice] "+p.disclaimerText),
		noticeElement(p, p.disclaimer, "notice"))
	for _, n := range []*stanza.Stanza{toLocal, toRemote} {
		env := &router.Envelope{Stanza: n, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: server.Domainpart()}, Flags: router.BoundaryDone}
		if err := g.opts.Forwarder.Forward(ctx, env); err != nil {
			g.opts.Log.WithError(err).WithField("to", n.To.String()).Warn("policy: disclaimer not delivered")
		}
	}
}

// subscriptionRefused tells a local user that their presence subscription
// to an outside contact was refused. The router's bounce is a presence
// error, which clients do not show (and which goes to the bare JID), so
// without this the request would seem to hang.
func (g *Gate) subscriptionRefused(ctx context.Context, p *Policy, x *crossing, dec router.Decision) {
	if x.local.Localpart() == "" {
		return
	}
	server := x.local.Domain()
	n := &stanza.Stanza{Kind: stanza.KindMessage, Type: "normal", From: server, To: x.local.Bare()}
	r := &rule{id: dec.Rule, action: ActDeny}
	if i := strings.LastIndexByte(dec.Rule, ','); i >= 0 {
		r.id = dec.Rule[i+1:]
	}
	n.Append(stanza.NewElement("", "body").AppendText(fmt.Sprintf("Your request to see the presence of %s was refused: %s", x.remote.Bare(), dec.Text)),
		noticeElement(p, r, "deny"))
	env := &router.Envelope{Stanza: n, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: server.Domainpart()}, Flags: router.BoundaryDone}
	if err := g.opts.Forwarder.Forward(ctx, env); err != nil {
		g.opts.Log.WithError(err).WithField("to", n.To.String()).Warn("policy: subscription refusal notice not delivered")
	}
}

// noticeElement marks a notice for clients and tools:
// <policy xmlns='urn:gatehouse:policy:0' rule=” action=” version=”/>.
func noticeElement(p *Policy, r *rule, action string) *stanza.Element {
	return stanza.NewElement(nsPolicyNote, "policy", "rule", r.id, "action", action, "version", p.version)
}

// notify sends rule r's notice to the manager, the compliance officers and
// the JIDs the rule lists, as messages from the server.
func (g *Gate) notify(ctx context.Context, p *Policy, r *rule, x *crossing, st *stanza.Stanza, sc *scratch, virus, note string) {
	var to []jid.JID
	user := x.local.Localpart()
	domain := x.local.Domainpart()
	if domain == "" {
		if len(g.opts.Hosts) == 0 {
			return
		}
		domain = g.opts.Hosts[0]
	}
	if r.notifyManager && user != "" && g.opts.Directory != nil {
		mgr, err := g.opts.Directory.Manager(ctx, user)
		switch {
		case err != nil:
			g.opts.Log.WithError(err).WithField("user", user).Warn("policy: cannot look up the manager to notify")
		case mgr != "":
			if j, err := jid.New(mgr, domain, ""); err == nil {
				to = append(to, j)
			}
		}
	}
	if r.notifyCompliance {
		to = append(to, p.compliance...)
	}
	to = append(to, r.notifyJIDs...)
	if len(to) == 0 {
		return
	}
	body := p.noticeText(r, x, st, sc, virus)
	if note != "" {
		body += "\n" + note
	}
	server, err := jid.New("", domain, "")
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, j := range to {
		k := j.String()
		if seen[k] {
			continue
		}
		seen[k] = true
		n := &stanza.Stanza{Kind: stanza.KindMessage, Type: "normal", From: server, To: j}
		n.Append(stanza.NewElement("", "subject").AppendText("Policy notice: "+r.id),
			stanza.NewElement("", "body").AppendText(body), noticeElement(p, r, r.action.String()))
		env := &router.Envelope{Stanza: n, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: domain}, Flags: router.BoundaryDone}
		if err := g.opts.Forwarder.Forward(ctx, env); err != nil {
			g.opts.Log.WithError(err).WithField("to", k).Warn("policy: notice not delivered")
		}
	}
}

// maxExcerpt bounds the text quoted in a notice.
const maxExcerpt = 280

// noticeText says what happened, with enough context to act on it.
func (p *Policy) noticeText(r *rule, x *crossing, st *stanza.Stanza, sc *scratch, virus string) string {
	var b strings.Builder
	if st == nil {
		// An upload to the built-in service: no stanza, no outside party.
		fmt.Fprintf(&b, "Rule %s (%s, %s) acted on an upload by %s at %s.",
			r.id, r.stage, r.action, x.local.String(), x.now.UTC().Format(time.RFC3339))
		p.noticeFiles(&b, r, sc, virus)
		fmt.Fprintf(&b, "\nPolicy %s.", p.version)
		return b.String()
	}
	what := "stanza"
	switch st.Kind {
	case stanza.KindMessage:
		what = "message"
	case stanza.KindPresence:
		what = "presence"
	case stanza.KindIQ:
		what = "request"
	}
	fmt.Fprintf(&b, "Rule %s (%s, %s) acted on a %s %s from %s to %s at %s.",
		r.id, r.stage, r.action, x.dir, what, st.From.String(), st.To.String(), x.now.UTC().Format(time.RFC3339))
	switch r.stage {
	case StageContent:
		if m := p.matchedTerms(r, st, sc); len(m) > 0 {
			fmt.Fprintf(&b, "\nMatched: %s.", strings.Join(m, ", "))
		}
		if body := st.Body(); body != "" && r.action != ActRedact {
			if len(body) > maxExcerpt {
				body = body[:maxExcerpt] + "…"
			}
			fmt.Fprintf(&b, "\nText: %q", body)
		}
	case StageFiles, StageScan:
		p.noticeFiles(&b, r, sc, virus)
	case StageBarrier:
		a, g := p.sides(r)
		fmt.Fprintf(&b, "\nInformation barrier between groups %s and %s.", a, g)
	}
	fmt.Fprintf(&b, "\nPolicy %s.", p.version)
	return b.String()
}

// noticeFiles describes the files of a file or scan notice.
func (p *Policy) noticeFiles(b *strings.Builder, r *rule, sc *scratch, virus string) {
	for i := range sc.offers {
		o := &sc.offers[i]
		fmt.Fprintf(b, "\nFile: %s via %s, %s", describeType(o), o.Mechanism, sizeText(o.Size))
		if why := r.violation(o); r.stage == StageFiles && why != "" {
			fmt.Fprintf(b, " (%s)", why)
		}
	}
	if virus != "" {
		fmt.Fprintf(b, "\nMalware: %s.", virus)
	}
}

func sizeText(n int64) string {
	if n < 0 {
		return "size unknown"
	}
	return fmt.Sprintf("%d bytes", n)
}

// matchedTerms lists what rule r matched in st's text: the original
// words for lexicons, the pattern names for patterns.
func (p *Policy) matchedTerms(r *rule, st *stanza.Stanza, sc *scratch) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range st.Children {
		if c.El == nil || !textElement(st.Kind, c.El) {
			continue
		}
		text := c.El.Text()
		for _, sp := range p.spans(text, &r.lex, nil, sc) {
			w := text[sp.start:sp.end]
			if !seen[w] {
				seen[w] = true
				out = append(out, fmt.Sprintf("%q", w))
			}
		}
	}
	for _, j := range r.pats {
		if sc.patHit.has(j) {
			out = append(out, "pattern "+p.patNames[j])
		}
	}
	return out
}

// hasData reports whether an offer carries content the scanner saw.
func hasData(offers []FileOffer) bool {
	for i := range offers {
		if len(offers[i].Data) > 0 {
			return true
		}
	}
	return false
}

// hasLink reports whether an offer is a link the Gate fetches.
func hasLink(offers []FileOffer) bool {
	for i := range offers {
		if fetchable(&offers[i]) {
			return true
		}
	}
	return false
}

// LinkFetcher gets the file behind a link for scanning, bounded in size
// and time; a file too large to scan is an error.
type LinkFetcher interface {
	Fetch(ctx context.Context, url string) ([]byte, error)
}
