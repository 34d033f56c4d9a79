// Command gatehouse-bench is the XMPP load generator (xmpp/loadgen) and
// the report writer behind `just bench`: it runs one scenario against one
// server on a loopback address, prints the figures with its own CPU next
// to the server's, optionally writes them as JSON, and `report` turns a
// directory of such JSON files into the side-by-side table in
// docs/performance.md.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/loadgen"
)

// common holds the flags every scenario shares.
type common struct {
	addr, domain, tls, caFile, mech, sasl string
	insecure                              bool
	password, passwordFile                string
	serverPID                             int
	serverName                            string
	jsonOut                               string
	timeout                               time.Duration
}

func (c *common) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.addr, "addr", "127.0.0.1:5222", "c2s address (loopback only: 127.0.0.0/8, ::1, localhost)")
	f.StringVar(&c.domain, "domain", "localhost", "XMPP domain of the accounts (stream 'to', TLS name)")
	f.StringVar(&c.tls, "tls", "starttls", "starttls or plain (plain only for servers configured without TLS)")
	f.StringVar(&c.caFile, "ca", "", "PEM file with the server's certificate or CA (default: system roots)")
	f.BoolVar(&c.insecure, "insecure", false, "do not verify the server certificate")
	f.StringVar(&c.mech, "mech", "SCRAM-SHA-256", "SASL mechanism: SCRAM-SHA-1, SCRAM-SHA-256 (PLAIN for comparisons)")
	f.StringVar(&c.sasl, "sasl", loadgen.SASLCached, "SASL client: cached (own SCRAM with a salted-password cache, as real clients) or mellium (mellium.im/sasl, PBKDF2 on every login)")
	f.StringVar(&c.password, "password", "", "password of every bench account")
	f.StringVar(&c.passwordFile, "password-file", "", "read the password from the first line of this file")
	f.IntVar(&c.serverPID, "server-pid", 0, "server PID: its CPU and RSS (with its descendants) are read from /proc")
	f.StringVar(&c.serverName, "server", "", "label of the server in the output (gatehouse, prosody, ejabberd)")
	f.StringVar(&c.jsonOut, "json", "", "also write the result as JSON to this file")
	f.DurationVar(&c.timeout, "timeout", 15*time.Minute, "upper bound for the whole run")
}

func (c *common) target() (*loadgen.Target, error) {
	pw := c.password
	if c.passwordFile != "" {
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return nil, err
		}
		pw = strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")
	}
	if pw == "" {
		return nil, errors.New("no password: give --password or --password-file")
	}
	t := &loadgen.Target{Addr: c.addr, Domain: c.domain, TLS: loadgen.TLSMode(c.tls), Insecure: c.insecure,
		Mechanism: c.mech, SASL: c.sasl, Password: pw}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, err
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", c.caFile)
		}
	}
	return t, nil
}

// Record is what --json writes.
type Record struct {
	Scenario string         `json:"scenario"`
	Server   string         `json:"server,omitempty"`
	Time     time.Time      `json:"time"`
	Params   map[string]any `json:"params"`
	Result   any            `json:"result,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// finish prints the summary, writes JSON and turns err into the exit.
func (c *common) finish(out io.Writer, scenario string, params map[string]any, result any, summary func(io.Writer), err error) error {
	if result != nil && reflect.ValueOf(result).IsNil() {
		result = nil // a typed nil pointer from a failed scenario
	}
	if result != nil && summary != nil {
		summary(out)
	}
	params["addr"], params["tls"], params["mech"], params["sasl"] = c.addr, c.tls, c.mech, c.sasl
	if c.jsonOut != "" {
		rec := Record{Scenario: scenario, Server: c.serverName, Time: time.Now().UTC(), Params: params, Result: result}
		if err != nil {
			rec.Error = err.Error()
		}
		b, jerr := json.MarshalIndent(rec, "", "  ")
		if jerr != nil {
			return jerr
		}
		if werr := os.WriteFile(c.jsonOut, append(b, '\n'), 0o644); werr != nil {
			return werr
		}
	}
	return err
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + " ms" }

// cpuLine prints client and server CPU and warns when the client may be
// limiting the figure.
func cpuLine(w io.Writer, u loadgen.Usage) {
	fmt.Fprintf(w, "  wall %.2fs  client CPU %.2fs (%.2f cores)", u.Wall.Seconds(), u.ClientCPU.Seconds(), u.ClientCores())
	if u.ServerErr != "" {
		fmt.Fprintf(w, "  server: %s\n", u.ServerErr)
		return
	}
	if u.ServerCPU > 0 || u.ServerRSS > 0 {
		fmt.Fprintf(w, "  server CPU %.2fs (%.2f cores)  server RSS %.1f MiB", u.ServerCPU.Seconds(), u.ServerCores(), float64(u.ServerRSS)/(1<<20))
	}
	fmt.Fprintln(w)
	if u.ClientCores() > 0.9 || (u.ServerCPU > 0 && u.ClientCPU > u.ServerCPU) {
		fmt.Fprintln(w, "  WARNING: the load generator used more CPU than the server or nearly a full core; the figure may be bounded by the client")
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:   "gatehouse-bench",
		Short: "XMPP load generator and benchmark report for Gatehouse, Prosody and ejabberd",
		Long: `gatehouse-bench logs clients in to an XMPP server on a loopback address and runs one
benchmark scenario. Accounts are PREFIX0 … PREFIXn-1 with one password; create them with
the server's admin tool first (testdata/bench/run.sh does all of it for three servers).
Every scenario is bounded in count and time, refuses non-loopback targets, and prints its
own CPU next to the server's (--server-pid).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	defer pprof.StopCPUProfile()
	root.AddCommand(loginCmd(), messagingCmd(), rosterCmd(), idleCmd(), fanoutCmd(), boundaryCmd(), reportCmd(), prosodyRostersCmd())
	if err := root.ExecuteContext(ctx); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
		os.Exit(1)
	}
}

func runCtx(cmd *cobra.Command, c *common) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

func loginCmd() *cobra.Command {
	var c common
	var cfg loadgen.LoginConfig
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Login storm: N full logins at concurrency C → logins/s, p50/p99 login time",
		Long: `Each login: TCP connect, stream, STARTTLS + TLS handshake (never resumed), SASL, bind,
initial presence and an iq round trip proving the presence was processed; then the stream is
closed. Login i uses account PREFIX(i mod accounts).`,
		Example: `  gatehouse-bench login --addr 127.0.0.1:5222 --ca cert.pem --password-file pw -n 2000 -c 50`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID, cfg.Timeout = c.serverPID, c.timeout
			r, err := loadgen.LoginStorm(ctx, t, cfg)
			params := map[string]any{"n": cfg.N, "concurrency": cfg.Concurrency, "accounts": cfg.Accounts}
			return c.finish(cmd.OutOrStdout(), "login", params, r, func(w io.Writer) {
				fmt.Fprintf(w, "login storm %s: %d ok, %d failed, %.0f logins/s, p50 %s, p90 %s, p99 %s, max %s\n",
					c.serverName, r.OK, r.Failed, r.PerSecond, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
				cpuLine(w, r.Usage)
			}, err)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&cfg.Prefix, "prefix", "login", "account name prefix")
	cmd.Flags().IntVar(&cfg.Accounts, "accounts", 50, "accounts to cycle through")
	cmd.Flags().IntVarP(&cfg.N, "n", "n", 1000, "number of logins")
	cmd.Flags().IntVarP(&cfg.Concurrency, "concurrency", "c", 50, "logins in flight")
	return cmd
}

func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func messagingCmd() *cobra.Command {
	var c common
	var cfg loadgen.MessagingConfig
	var rates string
	cmd := &cobra.Command{
		Use:   "messaging",
		Short: "P pairs at stepped aggregate rates → highest rate with p99 < 100 ms and delivered == sent",
		Long: `Within each pair both sides send chat messages to the other's full JID on a fixed
schedule; latency runs from the scheduled send time to receipt (no coordinated omission).
Steps stop at the first one that loses a message or misses the p99 bound.`,
		Example: `  gatehouse-bench messaging --ca cert.pem --password-file pw --pairs 50 --rates 1000,2000,5000,10000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			if cfg.Rates, err = parseRates(rates); err != nil {
				return err
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID = c.serverPID
			r, err := loadgen.Messaging(ctx, t, cfg)
			params := map[string]any{"pairs": cfg.Pairs, "rates": cfg.Rates, "step_ns": cfg.Step, "body_bytes": cfg.BodyBytes, "max_p99_ns": cfg.MaxP99}
			return c.finish(cmd.OutOrStdout(), "messaging", params, r, func(w io.Writer) {
				for _, s := range r.Steps {
					verdict := "pass"
					if !s.Pass {
						verdict = "FAIL"
					}
					fmt.Fprintf(w, "messaging %s %6d msg/s: sent %d delivered %d errors %d  p50 %s p99 %s max %s  %s\n",
						c.serverName, s.Rate, s.Sent, s.Delivered, s.Errors, ms(s.P50), ms(s.P99), ms(s.Max), verdict)
					cpuLine(w, s.Usage)
				}
				fmt.Fprintf(w, "messaging %s: highest passing rate %d msg/s\n", c.serverName, r.Best)
			}, err)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&cfg.Prefix, "prefix", "msg", "account name prefix (2×pairs accounts)")
	cmd.Flags().IntVar(&cfg.Pairs, "pairs", 50, "connected pairs")
	cmd.Flags().StringVar(&rates, "rates", "1000,2000,5000,10000,20000,40000", "aggregate messages/s per step, ascending")
	cmd.Flags().DurationVar(&cfg.Step, "step", 5*time.Second, "duration of each step")
	cmd.Flags().DurationVar(&cfg.Drain, "drain", 5*time.Second, "time allowed after a step for deliveries")
	cmd.Flags().IntVar(&cfg.BodyBytes, "body", 100, "message body size in bytes")
	cmd.Flags().DurationVar(&cfg.MaxP99, "max-p99", 100*time.Millisecond, "p99 end-to-end latency bound")
	cmd.Flags().DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unjudged warm-up at the first rate (negative: none)")
	cmd.Flags().BoolVar(&cfg.KeepGoing, "keep-going", false, "run every step even after one fails")
	return cmd
}

func rosterCmd() *cobra.Command {
	var c common
	var cfg loadgen.RosterConfig
	cmd := &cobra.Command{
		Use:   "roster",
		Short: "Populate mutual rosters through the protocol (roster set + subscribe/subscribed)",
		Long: `Every user gets DEGREE contacts (its ring neighbours) with subscription both, through
jabber:iq:roster sets and presence subscribe/subscribed handshakes, so the same rosters are
made the same way on every server. Already complete items are kept.`,
		Example: `  gatehouse-bench roster --prefix idle --users 1000 --degree 20 --ca cert.pem --password-file pw`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID, cfg.Timeout = c.serverPID, c.timeout
			r, err := loadgen.PopulateRosters(ctx, t, cfg)
			params := map[string]any{"users": cfg.Users, "degree": cfg.Degree, "prefix": cfg.Prefix}
			return c.finish(cmd.OutOrStdout(), "roster-"+cfg.Prefix, params, r, func(w io.Writer) {
				fmt.Fprintf(w, "rosters %s %s: %d users × %d contacts: %d complete, %d already both, %d subscriptions sent\n",
					c.serverName, cfg.Prefix, r.Users, r.Degree, r.Complete, r.Already, r.Sent)
				cpuLine(w, r.Usage)
			}, err)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&cfg.Prefix, "prefix", "idle", "account name prefix")
	cmd.Flags().IntVar(&cfg.Users, "users", 100, "users")
	cmd.Flags().IntVar(&cfg.Degree, "degree", 20, "contacts per user (even)")
	cmd.Flags().IntVarP(&cfg.Concurrency, "concurrency", "c", 50, "logins in flight")
	return cmd
}

func idleCmd() *cobra.Command {
	var c common
	var cfg loadgen.IdleConfig
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "C idle sessions with rosters → server RSS per session (needs --server-pid)",
		Long: `Sessions log in, fetch their roster, send initial presence and wait for every contact's
presence; after --settle the server's VmRSS (PID and descendants) is read. Per session =
(RSS loaded − RSS before the first login) / sessions.`,
		Example: `  gatehouse-bench idle --prefix idle --users 1000 --degree 20 --server-pid 1234 --ca cert.pem --password-file pw`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID, cfg.Timeout = c.serverPID, c.timeout
			r, err := loadgen.Idle(ctx, t, cfg)
			params := map[string]any{"users": cfg.Users, "degree": cfg.Degree, "settle_ns": cfg.Settle}
			return c.finish(cmd.OutOrStdout(), "idle", params, r, func(w io.Writer) {
				fmt.Fprintf(w, "idle %s: %d sessions (roster ≥ %d, %d saw all contacts online in %s): RSS %.1f → %.1f MiB, %.1f KiB per session\n",
					c.serverName, r.Sessions, r.RosterMin, r.PresenceDone, ms(r.OnlineIn),
					float64(r.RSSBefore)/(1<<20), float64(r.RSSLoaded)/(1<<20), float64(r.RSSPerSession)/1024)
				cpuLine(w, r.Usage)
			}, err)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&cfg.Prefix, "prefix", "idle", "account name prefix")
	cmd.Flags().IntVar(&cfg.Users, "users", 1000, "sessions")
	cmd.Flags().IntVar(&cfg.Degree, "degree", 20, "contacts per roster (0: no roster)")
	cmd.Flags().IntVarP(&cfg.Concurrency, "concurrency", "c", 50, "logins in flight")
	cmd.Flags().DurationVar(&cfg.Settle, "settle", 5*time.Second, "quiet time before reading the memory")
	return cmd
}

func fanoutCmd() *cobra.Command {
	var c common
	var cfg loadgen.FanoutConfig
	cmd := &cobra.Command{
		Use:     "fanout",
		Short:   "Presence fan-out: users with DEGREE-contact rosters come online at once → time and CPU",
		Example: `  gatehouse-bench fanout --prefix fan --users 200 --degree 50 --server-pid 1234 --ca cert.pem --password-file pw`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID, cfg.Timeout = c.serverPID, c.timeout
			r, err := loadgen.Fanout(ctx, t, cfg)
			params := map[string]any{"users": cfg.Users, "degree": cfg.Degree}
			return c.finish(cmd.OutOrStdout(), "fanout", params, r, func(w io.Writer) {
				fmt.Fprintf(w, "fan-out %s: %d users × %d contacts online in %s: %d/%d presences seen (%d received), %.0f/s, server CPU %s per user\n",
					c.serverName, r.Users, r.Degree, ms(r.Time), r.Seen, r.Expected, r.Received, r.PerSecond, ms(r.ServerCPUPerUser))
				cpuLine(w, r.Usage)
			}, err)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&cfg.Prefix, "prefix", "fan", "account name prefix")
	cmd.Flags().IntVar(&cfg.Users, "users", 200, "users")
	cmd.Flags().IntVar(&cfg.Degree, "degree", 50, "contacts per roster")
	cmd.Flags().IntVarP(&cfg.Concurrency, "concurrency", "c", 50, "logins in flight")
	return cmd
}

func boundaryCmd() *cobra.Command {
	var c common
	var cfg loadgen.BoundaryConfig
	var rates, secretFile string
	cmd := &cobra.Command{
		Use:   "boundary",
		Short: "Messages across the company border to and from a component → crossings/s and latency",
		Long: `This tool connects to the server's XEP-0114 component listener as the component DOMAIN
(an outside network such as an IRC gateway) and logs PAIRS local users in. Local user i
sends chat messages to b<i>@DOMAIN and the component sends from b<i>@DOMAIN to user i, on
the same schedule, with the same bodies, latency measure and pass rule as the messaging
scenario: every message crosses the border, half outbound, half inbound, and passes the
server's boundary (policy, archive). Run messaging at the same rates for the added latency.`,
		Example: `  gatehouse-bench boundary --ca cert.pem --password-file pw --component bench.localhost \
    --component-addr 127.0.0.1:5347 --secret-file secret --pairs 50 --rates 1000,2000,5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := c.target()
			if err != nil {
				return err
			}
			if cfg.Rates, err = parseRates(rates); err != nil {
				return err
			}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return err
				}
				cfg.Secret = strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")
			}
			ctx, cancel := runCtx(cmd, &c)
			defer cancel()
			cfg.ServerPID = c.serverPID
			r, err := loadgen.Boundary(ctx, t, cfg)
			params := map[string]any{"pairs": cfg.Pairs, "rates": cfg.Rates, "step_ns": cfg.Step, "body_bytes": cfg.BodyBytes,
				"max_p99_ns": cfg.MaxP99, "component": cfg.Component}
			return c.finish(cmd.OutOrStdout(), "boundary", params, r, func(w io.Writer) {
				for i, s := range r.Steps {
					verdict := "pass"
					if !s.Pass {
						verdict = "FAIL"
					}
					fmt.Fprintf(w, "boundary %s %6d crossings/s: sent %d delivered %d errors %d  p50 %s p99 %s max %s  %s\n",
						c.serverName, s.Rate, s.Sent, s.Delivered, s.Errors, ms(s.P50), ms(s.P99), ms(s.Max), verdict)
					if i < len(r.Directions) {
						d := r.Directions[i]
						fmt.Fprintf(w, "  outbound (users → component) %d delivered, p50 %s p99 %s; inbound (component → users) %d delivered, p50 %s p99 %s\n",
							d.OutDelivered, ms(d.OutP50), ms(d.OutP99), d.InDelivered, ms(d.InP50), ms(d.InP99))
					}
					cpuLine(w, s.Usage)
				}
				fmt.Fprintf(w, "boundary %s: highest passing rate %d crossings/s\n", c.serverName, r.Best)
			}, err)
		},
	}
	c.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.Component, "component", "", "the component's domain (configured on the server with its secret)")
	f.StringVar(&cfg.ComponentAddr, "component-addr", "127.0.0.1:5347", "the server's component listener (loopback only)")
	f.StringVar(&cfg.Secret, "secret", "", "the component's shared secret")
	f.StringVar(&secretFile, "secret-file", "", "read the component secret from the first line of this file")
	f.StringVar(&cfg.Prefix, "prefix", "msg", "account name prefix of the local users")
	f.IntVar(&cfg.Pairs, "pairs", 50, "local users, each paired with one outside address")
	f.StringVar(&rates, "rates", "1000,2000,5000,10000,20000,40000", "aggregate crossings/s per step, ascending")
	f.DurationVar(&cfg.Step, "step", 5*time.Second, "duration of each step")
	f.DurationVar(&cfg.Drain, "drain", 5*time.Second, "time allowed after a step for deliveries")
	f.IntVar(&cfg.BodyBytes, "body", 100, "message body size in bytes")
	f.DurationVar(&cfg.MaxP99, "max-p99", 100*time.Millisecond, "p99 end-to-end latency bound")
	f.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unjudged warm-up at the first rate (negative: none)")
	f.BoolVar(&cfg.KeepGoing, "keep-going", false, "run every step even after one fails")
	return cmd
}
