package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/logging/archive"
	"gatehouse/policy"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

type policyReplayFlags struct {
	file, archive string
	since         time.Duration
	limit         int
	all           bool
}

func newPolicyReplayCmd(g *globals) *cobra.Command {
	var f policyReplayFlags
	cmd := &cobra.Command{
		Use:   "replay [--since 720h] [--policy FILE] [--archive FILE]",
		Short: "Run the policy over archived crossings and report what would have changed",
		Long: `Evaluate every crossing recorded in the compliance archive since --since ago
against the policy (policy.file, or --policy to try a new file) and report the
crossings whose outcome would differ from the recorded one: allowed then and
denied now, denied then and allowed now, or decided by other rules (a flag,
a redaction or a notice that would now act, or no longer would).

Nothing is sent and nothing is changed; the archive records the search itself
(an "archive.search" admin action by os:<your user name>). Groups are today's
memberships from the data directory, not those of the time; time windows use
each crossing's time. The disclaimer is left out of the comparison: whether
it was due depends on earlier traffic.`,
		Example: `  gatehouse -c gatehouse.yaml policy replay --since 720h
  gatehouse -c gatehouse.yaml policy replay --policy new.yaml --all
  gatehouse -c gatehouse.yaml policy replay --archive /backup/archive.db --since 8760h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPolicyReplay(cmd, g, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "policy", "", "policy file (default: policy.file)")
	fl.StringVar(&f.archive, "archive", "", "the compliance archive database (default: archive.file in data_dir)")
	fl.DurationVar(&f.since, "since", 720*time.Hour, "replay crossings from this long ago until now")
	fl.IntVar(&f.limit, "limit", 0, "evaluate at most this many crossings (0: all)")
	fl.BoolVar(&f.all, "all", false, "list every crossing, not only those that would change")
	return cmd
}

// replayChange classifies how a crossing's outcome would differ.
type replayChange string

const (
	changeNone     replayChange = "unchanged"
	changeNowDeny  replayChange = "allow→deny"
	changeNowAllow replayChange = "deny→allow"
	changeRules    replayChange = "rules changed"
	// changeDelivery: the same rules, but what is delivered differs (a
	// rule now redacts more, less or not at all).
	changeDelivery replayChange = "delivery changed"
)

// replayResult is the outcome of a replay.
type replayResult struct {
	evaluated, skipped int
	counts             map[replayChange]int
}

func runPolicyReplay(cmd *cobra.Command, g *globals, f *policyReplayFlags) error {
	ctx := cmd.Context()
	cfg, err := g.load()
	if err != nil {
		return err
	}
	file, err := policyFile(cfg, nil, f.file)
	if err != nil {
		return err
	}
	p, err := policy.Load(file, server.PolicyOptions(cfg))
	if err != nil {
		return err
	}
	if f.archive == "" {
		f.archive = cfg.Archive.Path(cfg.DataDir, cfg.Archive.File)
	}
	if f.since <= 0 {
		return fmt.Errorf("--since %s: must be positive", f.since)
	}
	// archive.Open creates a missing file; a replay must not.
	if _, err := os.Stat(f.archive); err != nil {
		return fmt.Errorf("--archive: %w", err)
	}
	a, err := archive.Open(ctx, archive.Options{Path: f.archive})
	if err != nil {
		return err
	}
	defer func() { _ = a.Close(context.WithoutCancel(ctx)) }()
	db, err := openExistingDB(ctx, cfg)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	now := time.Now()
	filter := archive.Filter{From: now.Add(-f.since), To: now, Kinds: []string{"message", "presence", "iq"}, Limit: f.limit}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "policy:  %s (%s)\n", p.Version(), file)
	fmt.Fprintf(w, "archive: %s, crossings since %s\n", f.archive, filter.From.UTC().Format(time.RFC3339))
	r := &replayer{p: p, hosts: cfg.Hosts, db: db, groups: map[string][]string{}, w: w, all: f.all}
	res := replayResult{counts: map[replayChange]int{}}
	_, err = a.Search(ctx, filter, cliActor(), func(row *archive.StanzaRow) error {
		ch, err := r.row(ctx, row)
		switch {
		case err != nil:
			return err
		case ch == "":
			res.skipped++
		default:
			res.evaluated++
			res.counts[ch]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	changed := res.evaluated - res.counts[changeNone]
	fmt.Fprintf(w, "summary: %d crossings evaluated, %d would change (%s %d, %s %d, %s %d, %s %d)",
		res.evaluated, changed, changeNowDeny, res.counts[changeNowDeny], changeNowAllow, res.counts[changeNowAllow],
		changeRules, res.counts[changeRules], changeDelivery, res.counts[changeDelivery])
	if res.skipped > 0 {
		fmt.Fprintf(w, "; %d internal or unreadable rows skipped", res.skipped)
	}
	fmt.Fprintln(w)
	return nil
}

// cliActor names the operating-system user for the archive's audit trail.
func cliActor() archive.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return archive.Actor{Name: "os:" + name, Origin: "cli"}
}

type replayer struct {
	p      *policy.Policy
	hosts  []string
	db     *storage.DB
	groups map[string][]string // account name → groups (today's)
	w      io.Writer
	all    bool
}

// row evaluates one archived crossing and prints it if it changed (or
// with --all). It returns "" for rows it cannot replay.
func (r *replayer) row(ctx context.Context, row *archive.StanzaRow) (replayChange, error) {
	var dir policy.Direction
	switch row.Direction {
	case archive.Out:
		dir = policy.Outbound
	case archive.In:
		dir = policy.Inbound
	default:
		return "", nil // internal traffic never crossed the boundary
	}
	zone := router.ZoneRemote
	if row.Zone == archive.ZoneTransport {
		zone = router.ZoneTransport
	}
	st, err := parseRaw(row.Raw)
	if err != nil {
		fmt.Fprintf(r.w, "seq %d: skipped, the archived stanza does not parse: %v\n", row.Seq, err)
		return "", nil
	}
	local := st.From
	if dir == policy.Inbound {
		local = st.To
	}
	account := local.Localpart() != "" && slices.Contains(r.hosts, local.Domainpart())
	var groups []string
	if account {
		if groups, err = r.groupsOf(ctx, local.Localpart()); err != nil {
			return "", err
		}
	}
	e := r.p.Explain(policy.Sample{Dir: dir, Zone: zone, Stanza: st, LocalAccount: account, Groups: groups, Now: row.Time()})

	oldDeny := row.Verdict != archive.Allow
	newDeny := e.Decision.Verdict == router.Deny
	newRules := withoutDisclaimer(e.Decision.Rule, e)
	oldRules := stripRule(row.Rule, r.p.DisclaimerRule())
	ch := changeNone
	switch {
	case !oldDeny && newDeny:
		ch = changeNowDeny
	case oldDeny && !newDeny:
		ch = changeNowAllow
	case oldRules != newRules:
		ch = changeRules
	case !newDeny && deliveredText(row, st) != deliveredText(nil, e.Delivered):
		ch = changeDelivery
	}
	if ch == changeNone && !r.all {
		return ch, nil
	}
	fmt.Fprintf(r.w, "seq %d  %s  %s  %s %s %s  %s/%s  %s\n", row.Seq, row.TsUTC, row.Direction,
		row.Account, arrow(dir), row.Peer, row.Kind, row.Type, ch)
	fmt.Fprintf(r.w, "    then: %s rule=%s (%s)\n", verdictText(string(row.Verdict), row.DenyCondition), orDash(row.Rule), orDash(row.PolicyVersion))
	cond := ""
	if newDeny {
		cond = string(e.Decision.Condition)
	}
	verdict := "allow"
	if newDeny {
		verdict = "deny"
	}
	fmt.Fprintf(r.w, "    now:  %s rule=%s", verdictText(verdict, cond), e.Decision.Rule)
	for _, s := range e.Steps {
		if s.Stage == policy.StageDisclaimer {
			continue
		}
		fmt.Fprintf(r.w, "\n          %s %s %s: %s", s.Stage, s.Rule, s.Action, s.Detail)
	}
	fmt.Fprintln(r.w)
	return ch, nil
}

func (r *replayer) groupsOf(ctx context.Context, user string) ([]string, error) {
	if g, ok := r.groups[user]; ok || r.db == nil {
		return g, nil
	}
	g, err := r.db.UserGroups(ctx, user)
	if err != nil {
		return nil, err
	}
	r.groups[user] = g
	return g, nil
}

// parseRaw reads an archived stanza (serialized in jabber:client).
func parseRaw(raw string) (*stanza.Stanza, error) {
	d := xml.NewDecoder(strings.NewReader(raw))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.Parse(d, start)
		}
	}
}

// deliveredText is the text that was (row) or would be (st) delivered:
// bodies, subjects and status, which redaction changes.
func deliveredText(row *archive.StanzaRow, st *stanza.Stanza) string {
	if row != nil && row.RawDelivered != "" {
		if d, err := parseRaw(row.RawDelivered); err == nil {
			st = d
		}
	}
	if st == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range st.Children {
		if c.El == nil {
			continue
		}
		switch c.El.Name.Local {
		case "body", "subject", "status":
			b.WriteString(c.El.Name.Local)
			b.WriteByte(':')
			b.WriteString(c.El.Text())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// withoutDisclaimer drops the disclaimer from e's rule list.
func withoutDisclaimer(rules string, e policy.Explanation) string {
	for _, s := range e.Steps {
		if s.Stage == policy.StageDisclaimer {
			return stripRule(rules, s.Rule)
		}
	}
	return rules
}

// stripRule removes id from a comma-separated rule list ("default" when
// nothing is left).
func stripRule(rules, id string) string {
	if rules == "" {
		return policy.DefaultRule
	}
	if id == "" {
		return rules
	}
	parts := strings.Split(rules, ",")
	parts = slices.DeleteFunc(parts, func(s string) bool { return s == id })
	if len(parts) == 0 {
		return policy.DefaultRule
	}
	return strings.Join(parts, ",")
}

func arrow(dir policy.Direction) string {
	if dir == policy.Inbound {
		return "←"
	}
	return "→"
}

func verdictText(v, cond string) string {
	if v == "allow" || cond == "" {
		return v
	}
	return v + " " + cond
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
