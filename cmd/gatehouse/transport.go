package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"mellium.im/xmpp/jid"

	"gatehouse/transports/irc"
	"gatehouse/transports/registry"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

func newTransportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transport",
		Short: "Manage transports (gateways to IRC and other networks)",
		Long: `Manage transports: XEP-0114 components such as biboumi, Slidge or Spectrum 2,
and Gatehouse's own IRC transport. Each serves a domain of its own; its traffic
crosses the compliance boundary.

Transports come from components.transports in the configuration and from
"transport add", which keeps them in <data_dir>/transports.db; the server reads
both when it starts. See docs/transports.md.`,
	}
	cmd.AddCommand(newTransportListCmd(g), newTransportStatusCmd(g), newTransportAddCmd(g),
		newTransportRemoveCmd(g), newTransportUsersCmd(g), newTransportIRCCmd(g))
	return cmd
}

// transportSet is every transport with where it is defined.
type transportSet struct {
	cfg   *config.Config
	list  []config.Component
	added map[string]time.Time // domain → when "transport add" stored it
}

func loadTransportSet(ctx context.Context, g *globals) (*transportSet, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	ts := &transportSet{cfg: cfg, list: cfg.Components.Transports, added: map[string]time.Time{}}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, registry.File)); err != nil {
		return ts, nil
	}
	reg, err := registry.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	entries, err := reg.List(ctx)
	if err != nil {
		return nil, err
	}
	ts.list = registry.Merge(cfg.Components.Transports, entries)
	for _, e := range entries {
		ts.added[e.Domain] = e.Added
	}
	return ts, nil
}

func (ts *transportSet) find(domain string) (config.Component, bool) {
	for _, c := range ts.list {
		if c.Domain == domain {
			return c, true
		}
	}
	return config.Component{}, false
}

func (ts *transportSet) source(domain string) string {
	for _, c := range ts.cfg.Components.Transports {
		if c.Domain == domain {
			return "config"
		}
	}
	return "added " + ts.added[domain].Format("2006-01-02")
}

func kind(c config.Component) string {
	if c.Builtin != "" {
		return "builtin " + c.Builtin
	}
	return "external"
}

func privileges(p config.Privileges) string {
	var out []string
	for _, kv := range [][2]string{{"roster", p.Roster}, {"message", p.Message}, {"presence", p.Presence}} {
		if kv[1] != "" && kv[1] != "none" {
			out = append(out, kv[0]+"="+kv[1])
		}
	}
	if len(out) == 0 {
		return "-"
	}
	if p.Version == 1 {
		out = append(out, "v1")
	}
	return strings.Join(out, ",")
}

func newTransportListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the transports",
		Example: "  gatehouse transport list\n  gatehouse -c /etc/gatehouse/gatehouse.yaml transport list",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := loadTransportSet(cmd.Context(), g)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(ts.list) == 0 {
				fmt.Fprintln(out, "no transports (add one with: gatehouse transport add DOMAIN --type irc)")
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DOMAIN\tKIND\tTYPE\tNAME\tPRIVILEGES\tSOURCE")
			for _, c := range ts.list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Domain, kind(c), transportDash(c.Type), transportDash(c.Name), privileges(c.Privileges), ts.source(c.Domain))
			}
			return w.Flush()
		},
	}
}

func transportDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// linkState is the last link event of a transport in the compliance
// archive, which records every link up and down.
type linkState struct {
	event, ts, peer, reason string
}

func lastLinks(ctx context.Context, cfg *config.Config) (map[string]linkState, error) {
	path := cfg.Archive.Path(cfg.DataDir, cfg.Archive.File)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT network, event, ts_utc, peer_addr, coalesce(reason, '') FROM link_events
		WHERE seq IN (SELECT max(seq) FROM link_events WHERE zone = 'transport' GROUP BY network)`)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	defer rows.Close()
	out := map[string]linkState{}
	for rows.Next() {
		var n string
		var l linkState
		if err := rows.Scan(&n, &l.event, &l.ts, &l.peer, &l.reason); err != nil {
			return nil, err
		}
		out[n] = l
	}
	return out, rows.Err()
}

func newTransportStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [DOMAIN]",
		Short: "Show whether transports are connected",
		Long: `Show each transport's link as the compliance archive recorded it last (up since,
or down since and why), and for the builtin IRC transport its registrations.`,
		Example: "  gatehouse transport status\n  gatehouse transport status irc.example.com",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ts, err := loadTransportSet(ctx, g)
			if err != nil {
				return err
			}
			links, err := lastLinks(ctx, ts.cfg)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DOMAIN\tLINK\tSINCE\tDETAIL")
			found := false
			for _, c := range ts.list {
				if len(args) == 1 && c.Domain != args[0] {
					continue
				}
				found = true
				l, ok := links[c.Domain]
				state, since, detail := "never connected", "-", ""
				if ok {
					state, since = l.event, l.ts
					detail = "from " + l.peer
					if l.event == "down" && l.reason != "" {
						detail = l.reason
					}
				}
				if c.Builtin == "irc" {
					if regs, err := ircRegistrations(ctx, ts.cfg, c.Domain); err == nil {
						detail = strings.TrimPrefix(detail+fmt.Sprintf("; %d registration(s)", len(regs)), "; ")
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Domain, state, since, detail)
			}
			if len(args) == 1 && !found {
				return fmt.Errorf("no transport %s", args[0])
			}
			return w.Flush()
		},
	}
}

func ircDBPath(cfg *config.Config, domain string) string {
	return filepath.Join(cfg.DataDir, "irc-"+domain+".db")
}

func ircRegistrations(ctx context.Context, cfg *config.Config, domain string) ([]irc.Registration, error) {
	path := ircDBPath(cfg, domain)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	st, err := irc.OpenStore(ctx, path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Registrations(ctx, "")
}

func newTransportAddCmd(g *globals) *cobra.Command {
	var c config.Component
	var secretFile string
	cmd := &cobra.Command{
		Use:   "add DOMAIN",
		Short: "Add an external transport (a component such as biboumi, Slidge or Spectrum 2)",
		Long: `Add an external transport, kept in <data_dir>/transports.db. Without --secret-file
a random secret is made and printed once: give it to the component. The server
serves the transport from its next start.`,
		Example: `  gatehouse transport add irc.example.com --type irc --name IRC
  gatehouse transport add telegram.example.com --type telegram --roster both --message outgoing --presence managed_entity
  gatehouse transport add icq.example.com --type icq --roster both --privilege-version 1 --secret-file icq.secret`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ts, err := loadTransportSet(ctx, g)
			if err != nil {
				return err
			}
			d, err := config.NormalizeDomain(args[0])
			if err != nil {
				return err
			}
			c.Domain = d
			for _, h := range ts.cfg.Hosts {
				if h == d {
					return fmt.Errorf("%s is a hosted domain, not a transport", d)
				}
			}
			if _, ok := ts.find(d); ok {
				return fmt.Errorf("transport %s exists already (%s)", d, ts.source(d))
			}
			generated := secretFile == ""
			if generated {
				var b [24]byte
				if _, err := rand.Read(b[:]); err != nil {
					return err
				}
				c.Secret = hex.EncodeToString(b[:])
			} else {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return err
				}
				c.Secret = strings.TrimRight(string(b), "\r\n")
			}
			if err := os.MkdirAll(ts.cfg.DataDir, 0o700); err != nil {
				return err
			}
			reg, err := registry.Open(ctx, ts.cfg.DataDir)
			if err != nil {
				return err
			}
			defer reg.Close()
			if err := reg.Add(ctx, c, time.Now()); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "added transport %s; restart the server (or send it SIGTERM and start it) to serve it\n", d)
			if generated {
				fmt.Fprintf(out, "component secret (shown once): %s\n", c.Secret)
			}
			fmt.Fprintf(out, "the component connects to %s as %s\n", strings.Join(ts.cfg.Components.Listen, " or "), d)
			return nil
		},
	}
	cmd.Flags().StringVar(&c.Type, "type", "", "XEP-0100 gateway type shown in service discovery (irc, telegram, ...)")
	cmd.Flags().StringVar(&c.Name, "name", "", "name shown in service discovery")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "read the shared secret from this file instead of making one")
	cmd.Flags().StringVar(&c.Privileges.Roster, "roster", "", "XEP-0356 roster permission: none, get, set or both")
	cmd.Flags().StringVar(&c.Privileges.Message, "message", "", "XEP-0356 message permission: none or outgoing")
	cmd.Flags().StringVar(&c.Privileges.Presence, "presence", "", "XEP-0356 presence permission: none or managed_entity")
	cmd.Flags().IntVar(&c.Privileges.Version, "privilege-version", 0, "XEP-0356 namespace version the component speaks: 2 (Slidge, default) or 1 (Spectrum 2)")
	return cmd
}

func newTransportRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "remove DOMAIN",
		Short:   "Remove a transport added with transport add",
		Example: "  gatehouse transport remove telegram.example.com",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ts, err := loadTransportSet(ctx, g)
			if err != nil {
				return err
			}
			if _, ok := ts.find(args[0]); !ok {
				return fmt.Errorf("no transport %s", args[0])
			}
			if ts.source(args[0]) == "config" {
				return fmt.Errorf("%s is in the configuration file: remove it from components.transports there", args[0])
			}
			reg, err := registry.Open(ctx, ts.cfg.DataDir)
			if err != nil {
				return err
			}
			defer reg.Close()
			if err := reg.Remove(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed transport %s; the server stops serving it at its next start\n", args[0])
			return nil
		},
	}
}

func newTransportUsersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "users DOMAIN",
		Short: "List who uses a transport",
		Long: `List the local users with contacts at the transport's domain in their rosters,
and for the builtin IRC transport the registrations (network and nick).`,
		Example: "  gatehouse transport users irc.example.com",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ts, err := loadTransportSet(ctx, g)
			if err != nil {
				return err
			}
			c, ok := ts.find(args[0])
			if !ok {
				return fmt.Errorf("no transport %s", args[0])
			}
			db, err := server.OpenDB(ctx, ts.cfg.DataDir)
			if err != nil {
				return err
			}
			defer db.Close()
			users, err := db.ListUsers(ctx)
			if err != nil {
				return err
			}
			type row struct {
				user             string
				contacts         int
				network, ircNick string
			}
			rows := map[string]*row{}
			for _, u := range users {
				items, _, err := db.Roster(ctx, u)
				if err != nil {
					return err
				}
				n := 0
				for _, it := range items {
					if j, err := jid.Parse(it.JID); err == nil && j.Domainpart() == c.Domain && j.Localpart() != "" {
						n++
					}
				}
				if n > 0 {
					rows[u+"@"+ts.cfg.Hosts[0]] = &row{user: u + "@" + ts.cfg.Hosts[0], contacts: n}
				}
			}
			var regs []irc.Registration
			if c.Builtin == "irc" {
				if regs, err = ircRegistrations(ctx, ts.cfg, c.Domain); err != nil {
					return err
				}
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tCONTACTS\tNETWORK\tNICK")
			for _, r := range regs {
				x := rows[r.User]
				if x == nil {
					x = &row{user: r.User}
					rows[r.User] = x
				}
				if x.network != "" {
					rows[r.User+"/"+r.Network] = &row{user: r.User, network: r.Network, ircNick: r.Nick}
					continue
				}
				x.network, x.ircNick = r.Network, r.Nick
			}
			keys := make([]string, 0, len(rows))
			for k := range rows {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				r := rows[k]
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.user, r.contacts, transportDash(r.network), transportDash(r.ircNick))
			}
			return w.Flush()
		},
	}
}

// newTransportIRCCmd runs the IRC transport as a process of its own.
func newTransportIRCCmd(g *globals) *cobra.Command {
	var (
		serverAddr, domain, secretFile, dbPath, logLevel string
		networks                                         []string
		poll                                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "irc",
		Short: "Run the IRC transport as its own process (XEP-0114 component)",
		Long: `Run Gatehouse's IRC transport outside the server: it connects to the component
listener like any external transport. List it in the server's configuration
under components.transports with its domain and secret (no "builtin"), with the
privileges roster: both. By default the server runs the same transport
in-process (builtin: irc).

A network is NAME=HOST:PORT, with "/tls" appended for TLS.`,
		Example: `  gatehouse transport irc --domain irc.example.com --secret-file irc.secret \
      --network libera=irc.libera.chat:6697/tls --db /var/lib/gatehouse-irc/irc.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("--secret-file: %w", err)
			}
			secret = []byte(strings.TrimRight(string(secret), "\r\n"))
			var nets []irc.Network
			for _, n := range networks {
				name, addr, ok := strings.Cut(n, "=")
				if !ok || name == "" || addr == "" {
					return fmt.Errorf("--network %q: want NAME=HOST:PORT[/tls]", n)
				}
				addr, tls := strings.CutSuffix(addr, "/tls")
				nets = append(nets, irc.Network{Name: name, Address: addr, TLS: tls})
			}
			if len(nets) == 0 {
				return errors.New("at least one --network is needed")
			}
			log := logrus.New()
			log.SetOutput(cmd.ErrOrStderr())
			if lvl, err := logrus.ParseLevel(logLevel); err == nil {
				log.SetLevel(lvl)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
				return err
			}
			st, err := irc.OpenStore(ctx, dbPath)
			if err != nil {
				return err
			}
			defer st.Close()
			tr, err := irc.New(irc.Config{Domain: domain, Server: serverAddr, Secret: secret, Networks: nets,
				Store: st, PollInterval: poll, Log: log.WithField("component", "irc-transport")})
			if err != nil {
				return err
			}
			return tr.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&serverAddr, "server", "127.0.0.1:5347", "the server's component listener")
	f.StringVar(&domain, "domain", "", "the transport's domain (required)")
	f.StringVar(&secretFile, "secret-file", "", "file with the component secret (required)")
	f.StringVar(&dbPath, "db", "irc-transport.db", "SQLite file for registrations and contacts")
	f.StringArrayVar(&networks, "network", nil, "an IRC network NAME=HOST:PORT[/tls] (repeatable; the first is the default)")
	f.DurationVar(&poll, "presence-poll", 30*time.Second, "ISON interval on networks without MONITOR or WATCH")
	f.StringVar(&logLevel, "log-level", "info", "log level")
	_ = cmd.MarkFlagRequired("domain")
	_ = cmd.MarkFlagRequired("secret-file")
	return cmd
}
