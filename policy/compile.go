package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Options tell the compiler about the server the policy runs in.
type Options struct {
	// Hosts are the hosted domains. Notify targets and compliance JIDs
	// must be on one of them (a notice never leaves the company). Empty:
	// not checked.
	Hosts []string
	// Scanner says whether a virus scanner (clamd) is configured; a policy
	// that enables scanning without one is refused.
	Scanner bool
	// LinkFetcher says whether the server can fetch files behind links
	// (policy.scan_links); a policy with scan.links needs it.
	LinkFetcher bool
}

// Stage is one step of evaluation. Stages run in this fixed order.
type Stage uint8

// Stages.
const (
	StageAccess Stage = iota + 1
	StageContent
	StageFiles
	StageScan
	StageDisclaimer
	// StageBarrier is evaluated instead of the others for traffic between
	// local accounts (information barriers).
	StageBarrier
)

func (s Stage) String() string {
	switch s {
	case StageAccess:
		return "access"
	case StageContent:
		return "content"
	case StageFiles:
		return "files"
	case StageScan:
		return "scan"
	case StageDisclaimer:
		return "disclaimer"
	case StageBarrier:
		return "barrier"
	}
	return "none"
}

// Action is what a rule does when it matches.
type Action uint8

// Actions.
const (
	ActAllow Action = iota + 1
	ActDeny
	ActFlag
	ActRedact
	// ActNotice is the disclaimer stage's action: notices to both sides.
	ActNotice
	// ActHold keeps an outbound message until a reviewer releases it.
	ActHold
)

func (a Action) String() string {
	switch a {
	case ActAllow:
		return "allow"
	case ActDeny:
		return "deny"
	case ActFlag:
		return "flag"
	case ActRedact:
		return "redact"
	case ActNotice:
		return "notice"
	case ActHold:
		return "hold"
	}
	return "none"
}

// DefaultRule is the rule id of decisions no rule made.
const DefaultRule = "default"

// Policy is a compiled policy: immutable, safe for concurrent use.
type Policy struct {
	version         string
	org             string
	compliance      []jid.JID
	defaultDeny     bool
	defaultText     string
	defaultDenyText string // defaultText naming the rule, for bounces

	access, content, files []*rule
	barriers               []*rule
	scan                   *rule
	scanLinks              bool // scan.links: fetch and scan files behind outside links
	disclaimer             *rule
	disclaimerText         string
	disclaimerPeriod       time.Duration

	lexNames []string
	auto     *automaton
	patNames []string
	pats     []*regexp.Regexp

	groups    []string // groups the rules name, index = bit
	groupIdx  map[string]int
	celGroups map[string]bool // names taken from CEL string literals

	hasHold   bool // some rule holds for review
	needText  bool // some content rule exists
	needFiles bool // file rules, scanning or a "file" kind selector
	terms     int
}

// Version is the policy version recorded with every decision: the file's
// version label and the first 12 hex digits of its SHA-256.
func (p *Policy) Version() string { return p.version }

// Groups returns the group names the policy refers to.
func (p *Policy) Groups() []string { return slices.Clone(p.groups) }

// DisclaimerRule returns the disclaimer's rule id, "" without a disclaimer.
func (p *Policy) DisclaimerRule() string {
	if p.disclaimer == nil {
		return ""
	}
	return p.disclaimer.id
}

// Summary describes the policy in one line.
func (p *Policy) Summary() string {
	s := fmt.Sprintf("version %s: %d access, %d content, %d file rules; %d lexicons (%d terms), %d patterns",
		p.version, len(p.access), len(p.content), len(p.files), len(p.lexNames), p.terms, len(p.pats))
	if p.scan != nil {
		s += "; virus scanning on"
	}
	if p.disclaimer != nil {
		s += "; disclaimer every " + p.disclaimerPeriod.String()
	}
	if len(p.barriers) > 0 {
		s += fmt.Sprintf("; %d information barriers", len(p.barriers))
	}
	return s
}

// HasHold reports whether some rule holds messages for review.
func (p *Policy) HasHold() bool { return p.hasHold }

// HasBarriers reports whether the policy governs traffic between local
// accounts.
func (p *Policy) HasBarriers() bool { return len(p.barriers) > 0 }

// rule is a compiled rule of any stage.
type rule struct {
	id     string
	stage  Stage
	line   int
	action Action

	cond       stanza.Condition
	text       string // bounce text for a local sender
	remoteText string // bounce text for an outside sender

	notifyManager    bool
	notifyCompliance bool
	notifyJIDs       []jid.JID

	sel selector
	cel *celRule // nil: no expression

	lex             bitset
	hasLex          bool
	pats            []int
	maxSize         int64 // -1: no limit
	allow           []typePattern
	block           []typePattern
	denyUnknownSize bool
	limits          bool // the file rule sets a limit

	sideA, sideB bitset // barrier: the two groups
}

func (r *rule) notifies() bool {
	return r.notifyManager || r.notifyCompliance || len(r.notifyJIDs) > 0
}

var (
	reID   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	reHHMM = regexp.MustCompile(`^([01][0-9]|2[0-4]):([0-5][0-9])$`)
)

var conditions = map[string]stanza.Condition{
	"policy-violation":      stanza.PolicyViolation,
	"not-allowed":           stanza.NotAllowed,
	"forbidden":             stanza.Forbidden,
	"not-acceptable":        stanza.NotAcceptable,
	"service-unavailable":   stanza.ServiceUnavailable,
	"recipient-unavailable": stanza.RecipientUnavailable,
}

var kindNames = map[string]kindMask{
	"message":      kindMessage,
	"chat":         kindChat,
	"normal":       kindNormal,
	"groupchat":    kindGroupchat,
	"headline":     kindHeadline,
	"error":        kindError,
	"presence":     kindPresence,
	"subscription": kindSubscription,
	"muc-join":     kindMUCJoin,
	"iq":           kindIQ,
	"file":         kindFile,
}

// defaultRemoteText is what an outside sender is told: it names no rule,
// so the company's rule book is not shown to outsiders.
const defaultRemoteText = "refused by the recipient organization's policy"

type compiler struct {
	celEnv *cel.Env
	file   string
	idx    *lineIndex
	opts   Options
	errs   []error
	ids    map[string]string // id -> path
	p      *Policy
}

func (c *compiler) fail(path, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: c.idx.lineOf(path), Path: path, Rule: c.idx.ruleOf(path),
		Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) compile(f *File, data []byte) *Policy {
	sum := sha256.Sum256(data)
	p := &Policy{groupIdx: map[string]int{}, celGroups: map[string]bool{}}
	c.p = p
	c.ids = map[string]string{}
	if strings.TrimSpace(f.Version) == "" {
		c.fail("version", "a version label is required (for example \"2026-11-23.1\"); it is recorded with every decision")
	}
	p.version = strings.TrimSpace(f.Version) + "@" + hex.EncodeToString(sum[:6])
	p.org = strings.TrimSpace(f.Organization)
	if p.org == "" {
		p.org = "your organization"
	}
	for i, s := range f.Compliance {
		if j, ok := c.localJID(fmt.Sprintf("compliance[%d]", i), s); ok {
			p.compliance = append(p.compliance, j)
		}
	}
	switch f.DefaultAccess {
	case "", "allow":
	case "deny":
		p.defaultDeny = true
	default:
		c.fail("default_access", "%q is not allow or deny", f.DefaultAccess)
	}
	p.defaultText = f.DefaultMessage
	if p.defaultText == "" {
		p.defaultText = "communication outside the company is not allowed"
	}
	p.defaultDenyText = p.defaultText + " (rule " + DefaultRule + ")"

	// Lexicons, in name order so that indices do not depend on map order.
	names := make([]string, 0, len(f.Lexicons))
	for n := range f.Lexicons {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > maxSets {
		c.fail("lexicons", "at most %d lexicons", maxSets)
		names = names[:maxSets]
	}
	var terms []term
	var n normalizer
	for i, name := range names {
		lx := f.Lexicons[name]
		path := "lexicons." + name
		if !reID.MatchString(name) {
			c.fail(path, "lexicon name %q must be lowercase letters, digits, '.', '_' or '-'", name)
		}
		if lx.Match != "" && lx.Match != "word" && lx.Match != "substring" {
			c.fail(path+".match", "%q is not word or substring", lx.Match)
		}
		if len(lx.Terms) == 0 {
			c.fail(path+".terms", "a lexicon needs at least one term")
		}
		t, err := compileTerms(i, lx, &n)
		if err != nil {
			c.fail(path, "%v", err)
			continue
		}
		terms = append(terms, t...)
	}
	p.lexNames = names
	p.terms = len(terms)
	auto, err := buildAutomaton(terms)
	if err != nil {
		c.fail("lexicons", "%v", err)
	}
	p.auto = auto

	pnames := make([]string, 0, len(f.Patterns))
	for n := range f.Patterns {
		pnames = append(pnames, n)
	}
	sort.Strings(pnames)
	if len(pnames) > maxSets {
		c.fail("patterns", "at most %d patterns", maxSets)
		pnames = pnames[:maxSets]
	}
	for _, name := range pnames {
		path := "patterns." + name
		if !reID.MatchString(name) {
			c.fail(path, "pattern name %q must be lowercase letters, digits, '.', '_' or '-'", name)
		}
		re, err := regexp.Compile(f.Patterns[name])
		if err != nil {
			c.fail(path, "not an RE2 regular expression: %v", err)
			re = regexp.MustCompile(`$^`)
		}
		if re.MatchString("") {
			c.fail(path, "the pattern matches empty text, so it would match every message")
		}
		p.patNames = append(p.patNames, name)
		p.pats = append(p.pats, re)
	}

	for i := range f.Access {
		if r := c.rule(StageAccess, fmt.Sprintf("access[%d]", i), &f.Access[i]); r != nil {
			p.access = append(p.access, r)
		}
	}
	for i := range f.Content {
		if r := c.rule(StageContent, fmt.Sprintf("content[%d]", i), &f.Content[i]); r != nil {
			p.content = append(p.content, r)
		}
	}
	for i := range f.Files {
		if r := c.rule(StageFiles, fmt.Sprintf("files[%d]", i), &f.Files[i]); r != nil {
			p.files = append(p.files, r)
		}
	}
	if f.Scan.Enabled {
		p.scan = c.scan(&f.Scan)
		p.scanLinks = f.Scan.Links
		if f.Scan.Links && !c.opts.LinkFetcher {
			c.fail("scan.links", "fetching files behind links is off: set policy.scan_links: true in the server configuration")
		}
	} else if f.Scan.ID != "" || len(f.Scan.Notify) > 0 {
		c.check("scan", f.Scan.Selector)
	}
	if f.Disclaimer.Enabled {
		p.disclaimer = c.disclaimer(&f.Disclaimer)
	}
	for i := range f.Barriers {
		if r := c.barrier(fmt.Sprintf("barriers[%d]", i), &f.Barriers[i]); r != nil {
			p.barriers = append(p.barriers, r)
		}
	}
	p.needText = len(p.content) > 0
	p.needFiles = len(p.files) > 0 || p.scan != nil
	for _, rs := range [][]*rule{p.access, p.content, p.files} {
		for _, r := range rs {
			if r.sel.kinds&kindFile != 0 {
				p.needFiles = true
			}
		}
	}
	return p
}

// check compiles a selector only to report its errors.
func (c *compiler) check(path string, s Selector) { c.selector(path, s) }

func (c *compiler) claimID(path, id, def string) string {
	if id == "" {
		id = def
	}
	switch {
	case id == "":
		c.fail(path+".id", "every rule needs an id (lowercase letters, digits, '.', '_', '-'); it is recorded with each decision")
	case !reID.MatchString(id):
		c.fail(path+".id", "%q must be lowercase letters, digits, '.', '_' or '-' (at most 64)", id)
	case id == DefaultRule:
		c.fail(path+".id", "%q is reserved for decisions no rule made", id)
	default:
		if other, dup := c.ids[id]; dup {
			c.fail(path+".id", "%q is already the id of %s", id, other)
		}
		c.ids[id] = path
	}
	return id
}

func (c *compiler) rule(st Stage, path string, in *Rule) *rule {
	r := &rule{stage: st, line: c.idx.lineOf(path), maxSize: -1}
	r.id = c.claimID(path, in.ID, "")
	r.sel = c.selector(path, in.Selector)
	if r.sel.dir == Upload && st != StageFiles {
		c.fail(path+".direction", "upload is only for file rules and scan: an upload has no outside party and no text")
	}
	r.cel = c.cel(path, in.CEL)
	switch in.Action {
	case "allow":
		r.action = ActAllow
	case "deny":
		r.action = ActDeny
	case "flag":
		r.action = ActFlag
	case "redact":
		if st != StageContent {
			c.fail(path+".action", "redact is only for content rules")
		}
		r.action = ActRedact
	case "hold":
		c.hold(path, st, r)
	case "":
		c.fail(path+".action", "an action is required: allow, deny, flag%s", actionsOf(st))
	default:
		c.fail(path+".action", "%q is not allow, deny, flag%s", in.Action, actionsOf(st))
	}
	c.outcome(path, r, in.Condition, in.Message, in.RemoteMessage, in.Notify)

	if st != StageContent && (len(in.Lexicons) > 0 || len(in.Patterns) > 0) {
		c.fail(path, "lexicons and patterns are only for content rules")
	}
	if st != StageFiles && (in.MaxSize != nil || len(in.Types) > 0 || len(in.BlockTypes) > 0 || in.UnknownSize != "") {
		c.fail(path, "max_size, types, block_types and unknown_size are only for file rules")
	}
	switch st {
	case StageContent:
		for i, name := range in.Lexicons {
			j, ok := slices.BinarySearch(c.p.lexNames, name)
			if !ok {
				c.fail(fmt.Sprintf("%s.lexicons[%d]", path, i), "no lexicon %q (defined: %s)", name, listOrNone(c.p.lexNames))
				continue
			}
			r.lex.set(j)
			r.hasLex = true
		}
		for i, name := range in.Patterns {
			j, ok := slices.BinarySearch(c.p.patNames, name)
			if !ok {
				c.fail(fmt.Sprintf("%s.patterns[%d]", path, i), "no pattern %q (defined: %s)", name, listOrNone(c.p.patNames))
				continue
			}
			r.pats = append(r.pats, j)
		}
		if len(in.Lexicons) == 0 && len(in.Patterns) == 0 && r.action != ActAllow {
			c.fail(path, "a content rule needs lexicons or patterns (or action allow, to exempt from the content rules below)")
		}
	case StageFiles:
		if in.MaxSize != nil {
			if *in.MaxSize < 0 {
				c.fail(path+".max_size", "must be 0 or more bytes")
			}
			r.maxSize = *in.MaxSize
			r.limits = true
		}
		r.allow = c.types(path+".types", in.Types)
		r.block = c.types(path+".block_types", in.BlockTypes)
		if len(in.Types) > 0 || len(in.BlockTypes) > 0 {
			r.limits = true
		}
		switch in.UnknownSize {
		case "", "allow":
		case "deny":
			r.denyUnknownSize = true
			if in.MaxSize == nil {
				c.fail(path+".unknown_size", "only meaningful with max_size")
			}
		default:
			c.fail(path+".unknown_size", "%q is not allow or deny", in.UnknownSize)
		}
	}
	return r
}

// outcome compiles what a rule does besides its action.
func (c *compiler) outcome(path string, r *rule, cond, msg, remote string, notify []string) {
	r.cond = stanza.PolicyViolation
	if cond != "" {
		cd, ok := conditions[cond]
		if !ok {
			names := make([]string, 0, len(conditions))
			for k := range conditions {
				names = append(names, k)
			}
			sort.Strings(names)
			c.fail(path+".condition", "%q is not one of %s", cond, strings.Join(names, ", "))
		}
		r.cond = cd
	}
	if msg == "" {
		msg = "blocked by company policy"
	}
	r.text = fmt.Sprintf("%s (rule %s)", strings.TrimSpace(msg), r.id)
	r.remoteText = remote
	if r.remoteText == "" {
		r.remoteText = defaultRemoteText
	}
	for i, t := range notify {
		p := fmt.Sprintf("%s.notify[%d]", path, i)
		switch t {
		case "manager":
			r.notifyManager = true
		case "compliance":
			r.notifyCompliance = true
			if len(c.p.compliance) == 0 {
				c.fail(p, "notify compliance, but the policy lists no compliance JIDs")
			}
		default:
			if j, ok := c.localJID(p, t); ok {
				r.notifyJIDs = append(r.notifyJIDs, j)
			}
		}
	}
}

// localJID parses a bare JID on a hosted domain.
func (c *compiler) localJID(path, s string) (jid.JID, bool) {
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		c.fail(path, "%q is not manager, compliance or a bare JID user@domain", s)
		return jid.JID{}, false
	}
	if len(c.opts.Hosts) > 0 && !slices.Contains(c.opts.Hosts, j.Domainpart()) {
		c.fail(path, "%q is not on a hosted domain (%s): notices never leave the company", s, strings.Join(c.opts.Hosts, ", "))
		return jid.JID{}, false
	}
	return j, true
}

func (c *compiler) scan(in *Scan) *rule {
	r := &rule{stage: StageScan, line: c.idx.lineOf("scan"), action: ActDeny, maxSize: -1}
	r.id = c.claimID("scan", in.ID, "scan")
	r.sel = c.selector("scan", in.Selector)
	msg := in.Message
	if msg == "" {
		msg = "the file contains malware"
	}
	c.outcome("scan", r, "", msg, "", in.Notify)
	if !c.opts.Scanner {
		c.fail("scan.enabled", "virus scanning needs clamd: set policy.clamd in the server configuration")
	}
	return r
}

// actionsOf lists the actions beyond allow, deny and flag of a stage.
func actionsOf(st Stage) string {
	switch st {
	case StageContent:
		return ", redact or hold"
	case StageAccess:
		return " or hold"
	}
	return ""
}

// hold compiles action hold: outbound messages only, since only those
// can be kept before they are routed (docs/policy.md#hold-and-review).
func (c *compiler) hold(path string, st Stage, r *rule) {
	r.action = ActHold
	c.p.hasHold = true
	if st != StageAccess && st != StageContent {
		c.fail(path+".action", "hold is only for access and content rules")
	}
	if r.sel.dir != Outbound {
		c.fail(path+".direction", "a hold rule needs direction: outbound (only messages leaving the company can be held)")
	}
	if r.sel.kinds == 0 {
		r.sel.kinds = kindMessage
	} else if r.sel.kinds &= kindMessage; r.sel.kinds == 0 {
		c.fail(path+".kinds", "a hold rule applies to messages (chat, normal, groupchat, headline)")
	}
}

func (c *compiler) barrier(path string, in *Barrier) *rule {
	r := &rule{stage: StageBarrier, line: c.idx.lineOf(path), maxSize: -1}
	r.id = c.claimID(path, in.ID, "")
	r.sel = c.selector(path, Selector{Kinds: in.Kinds, Time: in.Time})
	switch in.Action {
	case "", "deny":
		r.action = ActDeny
	case "flag":
		r.action = ActFlag
	default:
		c.fail(path+".action", "%q is not deny or flag", in.Action)
	}
	msg := in.Message
	if msg == "" {
		msg = "an information barrier separates you from this person"
	}
	c.outcome(path, r, in.Condition, msg, "", in.Notify)
	if len(in.Between) != 2 {
		c.fail(path+".between", "name exactly two groups, e.g. [research, trading]")
		return r
	}
	if in.Between[0] == in.Between[1] {
		c.fail(path+".between", "the two groups are the same (%q)", in.Between[0])
	}
	r.sideA, _ = c.groups(path+".between", in.Between[:1])
	r.sideB, _ = c.groups(path+".between", in.Between[1:])
	return r
}

func (c *compiler) disclaimer(in *Disclaimer) *rule {
	r := &rule{stage: StageDisclaimer, line: c.idx.lineOf("disclaimer"), action: ActNotice, maxSize: -1}
	r.id = c.claimID("disclaimer", in.ID, "disclaimer")
	r.sel = c.selector("disclaimer", in.Selector)
	if r.sel.dir == Upload {
		c.fail("disclaimer.direction", "upload is only for file rules and scan")
	}
	c.p.disclaimerText = strings.TrimSpace(in.Text)
	if c.p.disclaimerText == "" {
		c.p.disclaimerText = "This conversation is recorded by " + c.p.org + "."
	}
	c.p.disclaimerPeriod = 24 * time.Hour
	if in.Period != "" {
		d, err := time.ParseDuration(in.Period)
		switch {
		case err != nil:
			c.fail("disclaimer.period", "%q is not a duration such as \"24h\"", in.Period)
		case d < time.Minute:
			c.fail("disclaimer.period", "must be at least 1m, got %s", d)
		default:
			c.p.disclaimerPeriod = d
		}
	}
	return r
}

func (c *compiler) selector(path string, s Selector) selector {
	var sel selector
	switch s.Direction {
	case "", "any":
	case "outbound":
		sel.dir = Outbound
	case "inbound":
		sel.dir = Inbound
	case "upload":
		sel.dir = Upload
	default:
		c.fail(path+".direction", "%q is not outbound, inbound, upload or any", s.Direction)
	}
	for i, z := range s.Zones {
		switch z {
		case "remote":
			sel.zones |= 1 << router.ZoneRemote
		case "transport":
			sel.zones |= 1 << router.ZoneTransport
		default:
			c.fail(fmt.Sprintf("%s.zones[%d]", path, i), "%q is not remote or transport", z)
		}
	}
	for i, d := range s.Domains {
		g, err := newGlob(d)
		if err != nil || strings.Contains(d, "@") {
			c.fail(fmt.Sprintf("%s.domains[%d]", path, i), "%q is not a domain pattern such as \"*.partner.example\"", d)
			continue
		}
		sel.domains = append(sel.domains, g)
	}
	for i, d := range s.JIDs {
		g, err := newJIDGlob(d)
		if err != nil {
			c.fail(fmt.Sprintf("%s.jids[%d]", path, i), "%q: %v", d, err)
			continue
		}
		sel.jids = append(sel.jids, g)
	}
	sel.users = c.users(path+".users", s.Users)
	sel.exceptUsers = c.users(path+".except_users", s.ExceptUsers)
	sel.groups, sel.hasGroups = c.groups(path+".groups", s.Groups)
	sel.exceptGroups, sel.hasExcept = c.groups(path+".except_groups", s.ExceptGroups)
	for i, k := range s.Kinds {
		m, ok := kindNames[k]
		if !ok {
			names := make([]string, 0, len(kindNames))
			for n := range kindNames {
				names = append(names, n)
			}
			sort.Strings(names)
			c.fail(fmt.Sprintf("%s.kinds[%d]", path, i), "%q is not one of %s", k, strings.Join(names, ", "))
		}
		sel.kinds |= m
	}
	if s.Time != nil {
		sel.window = c.window(path+".time", s.Time)
	}
	return sel
}

func (c *compiler) users(path string, in []string) map[string]struct{} {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]struct{}, len(in))
	for i, u := range in {
		p := fmt.Sprintf("%s[%d]", path, i)
		local, domain := u, ""
		if k := strings.LastIndexByte(u, '@'); k >= 0 {
			local, domain = u[:k], u[k+1:]
		}
		d := domain
		if d == "" {
			d = "localhost"
		}
		j, err := jid.New(local, d, "")
		if err != nil || j.Localpart() == "" {
			c.fail(p, "%q is not a user name", u)
			continue
		}
		if domain != "" && len(c.opts.Hosts) > 0 && !slices.Contains(c.opts.Hosts, j.Domainpart()) {
			c.fail(p, "%q is not on a hosted domain", u)
			continue
		}
		out[j.Localpart()] = struct{}{}
	}
	return out
}

func (c *compiler) groups(path string, in []string) (bitset, bool) {
	var b bitset
	for i, g := range in {
		if strings.TrimSpace(g) == "" {
			c.fail(fmt.Sprintf("%s[%d]", path, i), "empty group name")
			continue
		}
		k, ok := c.p.groupIdx[g]
		if !ok {
			if len(c.p.groups) == maxSets {
				c.fail(fmt.Sprintf("%s[%d]", path, i), "a policy may name at most %d groups", maxSets)
				continue
			}
			k = len(c.p.groups)
			c.p.groupIdx[g] = k
			c.p.groups = append(c.p.groups, g)
		}
		b.set(k)
	}
	return b, len(in) > 0
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func (c *compiler) window(path string, in *TimeWindow) *window {
	w := &window{from: 0, to: 24 * 60, loc: time.UTC}
	if len(in.Days) == 0 {
		w.days = 0x7f
	}
	for i, d := range in.Days {
		p := fmt.Sprintf("%s.days[%d]", path, i)
		lo, hi, isRange := strings.Cut(strings.ToLower(d), "-")
		a, ok1 := dayNames[lo]
		b := a
		ok2 := true
		if isRange {
			b, ok2 = dayNames[hi]
		}
		if !ok1 || !ok2 {
			c.fail(p, "%q is not a day (mon..sun) or a range such as mon-fri", d)
			continue
		}
		for x := a; ; x = (x + 1) % 7 {
			w.days |= 1 << x
			if x == b {
				break
			}
		}
	}
	parse := func(key, s string, def int) int {
		if s == "" {
			return def
		}
		m := reHHMM.FindStringSubmatch(s)
		if m == nil {
			c.fail(path+"."+key, "%q is not a time such as \"09:00\"", s)
			return def
		}
		min := (int(m[1][0]-'0')*10+int(m[1][1]-'0'))*60 + int(m[2][0]-'0')*10 + int(m[2][1]-'0')
		if min > 24*60 {
			c.fail(path+"."+key, "%q is past 24:00", s)
			return def
		}
		return min
	}
	w.from = parse("from", in.From, 0)
	w.to = parse("to", in.To, 24*60)
	if w.from == w.to {
		c.fail(path, "from and to are equal: the window would be empty")
	}
	if in.Location != "" {
		loc, err := time.LoadLocation(in.Location)
		if err != nil {
			c.fail(path+".location", "%q is not a time zone: %v", in.Location, err)
		} else {
			w.loc = loc
		}
	}
	return w
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
