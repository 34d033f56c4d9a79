package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"mellium.im/xmpp/jid"

	"gatehouse/policy"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, try out and reload the boundary policy",
		Long: `The boundary policy (docs/policy.md) decides what may cross between the company
and outside networks. Its file is policy.file in the configuration.`,
	}
	cmd.AddCommand(newPolicyCheckCmd(g), newPolicyTestCmd(g), newPolicyReloadCmd(g), newPolicyReplayCmd(g))
	return cmd
}

// policyFile returns the file named on the command line, or policy.file.
func policyFile(cfg *config.Config, args []string, flag string) (string, error) {
	switch {
	case len(args) > 0:
		return args[0], nil
	case flag != "":
		return flag, nil
	case cfg.Policy.File != "":
		return cfg.Policy.File, nil
	}
	return "", errors.New("no policy file: name one, or set policy.file in the configuration (-c)")
}

// openExistingDB opens the database only if it exists: checking a policy
// must not create a data directory as a side effect.
func openExistingDB(ctx context.Context, cfg *config.Config) (*storage.DB, error) {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, server.DBFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return server.OpenDB(ctx, cfg.DataDir)
}

func newPolicyCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file (default: policy.file) and exit",
		Long: `Compile the policy file as the server would. Every problem is listed with
file, line and rule id; nothing is changed. Groups the rules name that do not
exist yet in the data directory are reported as warnings.`,
		Example: `  gatehouse policy check testdata/policy/example.yaml
  gatehouse -c /etc/gatehouse/gatehouse.yaml policy check`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			file, err := policyFile(cfg, args, "")
			if err != nil {
				return err
			}
			p, err := policy.Load(file, server.PolicyOptions(cfg))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy OK: %s\n", p.Summary())
			db, err := openExistingDB(cmd.Context(), cfg)
			if err != nil || db == nil {
				return err
			}
			defer db.Close()
			missing, err := policy.MissingGroups(cmd.Context(), p, db)
			if err != nil {
				return err
			}
			for _, m := range missing {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: group %q does not exist (gatehouse group create %s); its rules match nobody\n", m, m)
			}
			return nil
		},
	}
}

type policyTestFlags struct {
	file, from, to, body, kind, stanzaFile, zone, groups, peerGroups, at string
}

func newPolicyTestCmd(g *globals) *cobra.Command {
	var f policyTestFlags
	cmd := &cobra.Command{
		Use:   "test --from ADDR --to ADDR (--body TEXT | --stanza FILE)",
		Short: "Evaluate a sample stanza and print the rules that act and the decision",
		Long: `Evaluate one crossing against the policy, without sending anything: which
rules match, in order, what each does, who would be notified and what the
router would do. One of --from and --to is a local user (alice or
alice@host), the other an outside address; the local user's groups come from
the data directory unless --groups is given. --stanza reads a whole stanza
(for file offers, presence, ...) from a file or "-" for standard input.

Scanning needs a file and a running clamd, so it is reported, not run; a
disclaimer is reported as due (the server sends it once per period).`,
		Example: `  gatehouse policy test --from alice --to partner@irc.example.com --body "Project X ships Monday"
  gatehouse policy test --from partner@irc.example.com --to alice --body "hi"
  gatehouse policy test --policy new.yaml --from alice --to bob@partner.example --groups interns --body "hi"
  gatehouse policy test --from alice --to bob@partner.example --stanza offer.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPolicyTest(cmd, g, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "policy", "", "policy file (default: policy.file)")
	fl.StringVar(&f.from, "from", "", "sender: a local user or an outside JID")
	fl.StringVar(&f.to, "to", "", "recipient: a local user or an outside JID")
	fl.StringVar(&f.body, "body", "", "message body")
	fl.StringVar(&f.kind, "type", "chat", "message type for --body: chat, normal, groupchat, headline")
	fl.StringVar(&f.stanzaFile, "stanza", "", "read the stanza (XML) from this file, - for standard input")
	fl.StringVar(&f.zone, "zone", "", "outside zone: remote or transport (default: transport for configured components, else remote)")
	fl.StringVar(&f.groups, "groups", "", "comma-separated groups of the local user (default: from the data directory)")
	fl.StringVar(&f.peerGroups, "to-groups", "", "between two local users: comma-separated groups of the recipient (default: from the data directory)")
	fl.StringVar(&f.at, "at", "", "evaluation time, RFC 3339 (default: now), for time windows")
	return cmd
}

func runPolicyTest(cmd *cobra.Command, g *globals, f *policyTestFlags) error {
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
	if f.from == "" || f.to == "" {
		return errors.New("--from and --to are required")
	}
	from, fromLocal, err := address(cfg, f.from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, toLocal, err := address(cfg, f.to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	var dir policy.Direction
	var local, outside jid.JID
	switch {
	case fromLocal && !toLocal:
		dir, local, outside = policy.Outbound, from, to
	case toLocal && !fromLocal:
		dir, local, outside = policy.Inbound, to, from
	case fromLocal:
		if !p.HasBarriers() {
			return errors.New("both addresses are local: traffic between local accounts meets only information barriers, and this policy has none")
		}
		return runBarrierTest(cmd, cfg, f, p, file, from, to)
	default:
		return errors.New("neither address is local: the server never relays between outside networks")
	}
	st, err := sampleStanza(cmd, f, from, to)
	if err != nil {
		return err
	}
	zone, err := zoneOf(cfg, outside.Domainpart(), f.zone)
	if err != nil {
		return err
	}
	now := time.Now()
	if f.at != "" {
		if now, err = time.Parse(time.RFC3339, f.at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	groups, managerOf, err := subjectInfo(cmd.Context(), cfg, local.Localpart(), f.groups, cmd.Flags().Changed("groups"))
	if err != nil {
		return err
	}
	e := p.Explain(policy.Sample{Dir: dir, Zone: zone, Stanza: st, LocalAccount: true, Groups: groups, Now: now})
	printExplanation(cmd.OutOrStdout(), p, file, dir, zone, local, outside, groups, managerOf, e)
	return nil
}

// runBarrierTest explains a stanza between two local accounts, which
// only the information barriers govern.
func runBarrierTest(cmd *cobra.Command, cfg *config.Config, f *policyTestFlags, p *policy.Policy, file string, from, to jid.JID) error {
	st, err := sampleStanza(cmd, f, from, to)
	if err != nil {
		return err
	}
	now := time.Now()
	if f.at != "" {
		if now, err = time.Parse(time.RFC3339, f.at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	groups, managerOf, err := subjectInfo(cmd.Context(), cfg, from.Localpart(), f.groups, cmd.Flags().Changed("groups"))
	if err != nil {
		return err
	}
	peer, _, err := subjectInfo(cmd.Context(), cfg, to.Localpart(), f.peerGroups, cmd.Flags().Changed("to-groups"))
	if err != nil {
		return err
	}
	e := p.Explain(policy.Sample{Dir: policy.Internal, Stanza: st, LocalAccount: true, Groups: groups, PeerGroups: peer, Now: now})
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "policy:    %s (%s)\n", p.Version(), file)
	fmt.Fprintf(w, "crossing:  internal, from %s (groups: %s) to %s (groups: %s)\n", from, listOr(groups, "none"), to, listOr(peer, "none"))
	printSteps(w, e, managerOf)
	return nil
}

// address parses a command-line address: a hosted user (alice,
// alice@host) is local; anything else must be a JID.
func address(cfg *config.Config, s string) (jid.JID, bool, error) {
	if !strings.Contains(s, "@") {
		user, err := normaliseUser(cfg, s)
		if err != nil {
			return jid.JID{}, false, err
		}
		j, err := jid.New(user, cfg.Hosts[0], "")
		return j, true, err
	}
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, false, fmt.Errorf("%q is not a JID: %w", s, err)
	}
	for _, h := range cfg.Hosts {
		if j.Domainpart() == h {
			return j, true, nil
		}
	}
	return j, false, nil
}

func zoneOf(cfg *config.Config, domain, flag string) (router.Zone, error) {
	switch flag {
	case "remote":
		return router.ZoneRemote, nil
	case "transport":
		return router.ZoneTransport, nil
	case "":
	default:
		return 0, fmt.Errorf("--zone %q is not remote or transport", flag)
	}
	for _, t := range cfg.Components.Transports {
		if t.Domain == domain {
			return router.ZoneTransport, nil
		}
	}
	return router.ZoneRemote, nil
}

// subjectInfo returns the local user's groups and a manager lookup, from
// the flags or the data directory.
func subjectInfo(ctx context.Context, cfg *config.Config, user, groupsFlag string, flagSet bool) ([]string, string, error) {
	var groups []string
	if flagSet {
		for _, g := range strings.Split(groupsFlag, ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
	}
	db, err := openExistingDB(ctx, cfg)
	if err != nil || db == nil {
		return groups, "", err
	}
	defer db.Close()
	if !flagSet {
		if groups, err = db.UserGroups(ctx, user); err != nil {
			return nil, "", err
		}
	}
	mgr, err := db.Manager(ctx, user)
	if err != nil {
		return nil, "", err
	}
	return groups, mgr, nil
}

// sampleStanza builds the stanza to evaluate: --stanza XML (addresses
// filled in where missing) or a message with --body.
func sampleStanza(cmd *cobra.Command, f *policyTestFlags, from, to jid.JID) (*stanza.Stanza, error) {
	if f.stanzaFile == "" {
		switch f.kind {
		case "chat", "normal", "groupchat", "headline":
		default:
			return nil, fmt.Errorf("--type %q is not chat, normal, groupchat or headline", f.kind)
		}
		st := &stanza.Stanza{Kind: stanza.KindMessage, Type: f.kind, From: from, To: to, ID: "policy-test"}
		if f.body != "" {
			st.Append(stanza.NewElement("", "body").AppendText(f.body))
		}
		return st, nil
	}
	var r io.Reader = cmd.InOrStdin()
	if f.stanzaFile != "-" {
		fh, err := os.Open(f.stanzaFile)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	d := xml.NewDecoder(io.LimitReader(r, 1<<20))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("--stanza: no stanza found: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		st, err := stanza.Parse(d, start)
		if err != nil {
			return nil, fmt.Errorf("--stanza: %w", err)
		}
		// The command line decides the addresses, as the server stamps
		// 'from' itself.
		st.From, st.To = from, to
		return st, nil
	}
}

func printExplanation(w io.Writer, p *policy.Policy, file string, dir policy.Direction, zone router.Zone,
	local, outside jid.JID, groups []string, manager string, e policy.Explanation) {
	fmt.Fprintf(w, "policy:    %s (%s)\n", p.Version(), file)
	fmt.Fprintf(w, "crossing:  %s, local %s (groups: %s), outside %s (%s)\n",
		dir, local, listOr(groups, "none"), outside, zone)
	for _, t := range e.Texts {
		fmt.Fprintf(w, "text:      %q (normalised)\n", t)
	}
	for _, o := range e.Offers {
		size := "size unknown"
		if o.Size >= 0 {
			size = strconv.FormatInt(o.Size, 10) + " bytes"
		}
		name := o.Name
		if name == "" {
			name = o.URL
		}
		fmt.Fprintf(w, "file:      %s via %s, %s, type %s\n", name, o.Mechanism, size, listOr([]string{o.MediaType}, "unknown"))
	}
	printSteps(w, e, manager)
}

// printSteps prints the rules that act, the notices, the decision and the
// archive columns of an explanation.
func printSteps(w io.Writer, e policy.Explanation, manager string) {
	if len(e.Steps) == 0 {
		fmt.Fprintln(w, "rules:     none matched")
	}
	for i, s := range e.Steps {
		fmt.Fprintf(w, "rule %d:    %-10s %-24s %-7s %s\n", i+1, s.Stage, s.Rule, s.Action, s.Detail)
	}
	for _, n := range e.Notify {
		if strings.HasSuffix(n, "→ manager") {
			if manager == "" {
				n += " (none set: gatehouse user set-manager)"
			} else {
				n += " (" + manager + ")"
			}
		}
		fmt.Fprintf(w, "notify:    %s\n", n)
	}
	if e.Scan {
		fmt.Fprintln(w, "scan:      the inline file content would be scanned by clamd")
	}
	d := e.Decision
	switch {
	case d.Verdict == router.Deny:
		fmt.Fprintf(w, "decision:  DENY %s %q\n", d.Condition, d.Text)
	case e.Hold != "":
		fmt.Fprintf(w, "decision:  HOLD for review (rule %s): delivered only when a reviewer releases it (gatehouse review)\n", e.Hold)
	default:
		fmt.Fprintln(w, "decision:  ALLOW")
		if e.Delivered != nil && e.Delivered.Body() != "" {
			fmt.Fprintf(w, "delivered: %q\n", e.Delivered.Body())
		}
	}
	fmt.Fprintf(w, "archive:   rule=%s policy_version=%s\n", d.Rule, d.PolicyVersion)
}

func listOr(l []string, none string) string {
	var out []string
	for _, s := range l {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return none
	}
	return strings.Join(out, ", ")
}

func newPolicyReloadCmd(g *globals) *cobra.Command {
	var pid int
	var pidFile string
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Validate policy.file and make the running server re-read it",
		Long: `Compile policy.file as the server would; if it is valid, make the running server
re-read it. The server swaps the policy all or nothing: a file that fails there
too (a group table it cannot read, a file changed since the check) leaves the
running policy in force.

By default the command asks the server over its admin API (admin.socket) and
prints the version now in force, or why the server refused. With --pid or
--pid-file it sends that process SIGHUP instead, which re-reads the
configuration and the policy; the server then logs "policy reloaded" with the
version, or why it refused. Under systemd, "systemctl reload gatehouse"
(ExecReload=kill -HUP $MAINPID) does the same.`,
		Example: `  gatehouse -c /etc/gatehouse/gatehouse.yaml policy reload
  gatehouse -c /etc/gatehouse/gatehouse.yaml policy reload --pid-file /run/gatehouse.pid
  gatehouse -c gatehouse.yaml policy reload --pid 4242`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			file, err := policyFile(cfg, nil, "")
			if err != nil {
				return err
			}
			p, err := policy.Load(file, server.PolicyOptions(cfg))
			if err != nil {
				return fmt.Errorf("not reloaded: %w", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "policy OK: %s\n", p.Summary())
			if pidFile != "" {
				b, err := os.ReadFile(pidFile)
				if err != nil {
					return fmt.Errorf("--pid-file: %w", err)
				}
				if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
					return fmt.Errorf("--pid-file %s: no process id in it", pidFile)
				}
			}
			if pid == 0 && !cmd.Flags().Changed("pid") {
				cl, err := adminClient(g)
				if err != nil {
					return fmt.Errorf("not reloaded: %w; give --pid or --pid-file to send SIGHUP", err)
				}
				var res server.PolicyReloadResult
				if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/policy/reload", nil, &res); err != nil {
					return fmt.Errorf("not reloaded: %w", notRunningHint(err))
				}
				fmt.Fprintf(out, "reloaded: the server now enforces %s\n", res.Summary)
				return nil
			}
			if pid <= 0 {
				return fmt.Errorf("--pid %d is not a process id", pid)
			}
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				return fmt.Errorf("signalling process %d: %w", pid, err)
			}
			fmt.Fprintf(out, "sent SIGHUP to process %d; the server logs \"policy reloaded\" with version %s, or why it refused\n", pid, p.Version())
			return nil
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "process id of the running server: send it SIGHUP")
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "file holding the process id of the running server: send it SIGHUP")
	return cmd
}
