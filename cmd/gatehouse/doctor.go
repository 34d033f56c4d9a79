package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

// Finding levels, worst last.
const (
	levelOK   = "ok"
	levelWarn = "warn"
	levelFail = "fail"
)

// finding is one result of `gatehouse doctor`.
type finding struct {
	Level string `json:"level"`
	Check string `json:"check"`
	What  string `json:"what"`
	Fix   string `json:"fix,omitempty"`
}

// doctor runs the checks. Its fields are what tests replace.
type doctor struct {
	cfg      *config.Config
	resolver *net.Resolver
	now      time.Time
	out      []finding
}

func (d *doctor) add(level, check, what, fix string) {
	d.out = append(d.out, finding{Level: level, Check: check, What: what, Fix: fix})
}

func newDoctorCmd(g *globals) *cobra.Command {
	var (
		out string
		dns string
	)
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check configuration, certificates, DNS, ports, permissions and the archive",
		Long: `Checks what a deployment needs and says how to fix each finding:
  config       the configuration file parses and validates
  certificate  the TLS certificate and key load, match, cover every host and are not (nearly) expired
  dns          the SRV records clients and other servers use to find this one
  ports        every listener can be bound, or answers when the server runs
  permissions  the data directory and the secrets in it are private to the server's user
  archive      the compliance archive's hash chain verifies
Exit status 1 when a check fails, 0 when there are only warnings.`,
		Example: `  gatehouse doctor -c /etc/gatehouse/gatehouse.yaml
  gatehouse doctor -c gatehouse.yaml --dns 127.0.0.1:53 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &doctor{resolver: net.DefaultResolver, now: time.Now()}
			if dns != "" {
				d.resolver = resolverAt(dns)
			}
			cfg, err := g.load()
			if err != nil {
				d.add(levelFail, "config", err.Error(), "fix the file at the line named; 'gatehouse config default' prints every key with its meaning")
			} else {
				d.cfg = cfg
				d.add(levelOK, "config", "configuration valid; hosts "+strings.Join(cfg.Hosts, ", "), "")
				d.run(cmd.Context())
			}
			if err := d.print(cmd.OutOrStdout(), out); err != nil {
				return err
			}
			for _, f := range d.out {
				if f.Level == levelFail {
					return &exitError{code: 1, err: errors.New("doctor found problems (marked fail above)")}
				}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "table", "output format: table or json")
	c.Flags().StringVar(&dns, "dns", "", "DNS server (host:port) to ask instead of the system resolver")
	return c
}

// resolverAt returns a resolver that asks only the DNS server at addr.
func resolverAt(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func (d *doctor) run(ctx context.Context) {
	d.checkCertificate()
	d.checkDNS(ctx)
	d.checkPorts(ctx)
	d.checkPermissions()
	d.checkArchive(ctx)
}

func (d *doctor) print(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(d.out)
	}
	if format != "table" && format != "" {
		return fmt.Errorf("unknown output format %q (use table or json)", format)
	}
	for _, f := range d.out {
		fmt.Fprintf(w, "%-4s  %-11s  %s\n", strings.ToUpper(f.Level), f.Check, f.What)
		if f.Fix != "" {
			fmt.Fprintf(w, "      %-11s  fix: %s\n", "", f.Fix)
		}
	}
	return nil
}

// checkCertificate loads the configured (or generated) certificate.
func (d *doctor) checkCertificate() {
	certFile, keyFile := d.cfg.TLS.CertFile, d.cfg.TLS.KeyFile
	generated := certFile == ""
	if generated {
		certFile = filepath.Join(d.cfg.DataDir, "tls", "cert.pem")
		keyFile = filepath.Join(d.cfg.DataDir, "tls", "key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
			d.add(levelWarn, "certificate", "no certificate configured; a self-signed one will be generated at first start",
				"clients warn about self-signed certificates and other servers will not verify it: set tls.cert_file and tls.key_file to a certificate from a CA (e.g. Let's Encrypt) for "+strings.Join(d.cfg.Hosts, ", "))
			return
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		d.add(levelFail, "certificate", fmt.Sprintf("%s / %s: %v", certFile, keyFile, err),
			"point tls.cert_file at the PEM chain and tls.key_file at its private key (they must belong together)")
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		d.add(levelFail, "certificate", fmt.Sprintf("%s: %v", certFile, err), "replace the certificate")
		return
	}
	left := leaf.NotAfter.Sub(d.now)
	switch {
	case left <= 0:
		d.add(levelFail, "certificate", fmt.Sprintf("%s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly)),
			"renew it, then 'gatehouse reload' (or SIGHUP) picks up the new files without a restart")
	case left < 14*24*time.Hour:
		d.add(levelWarn, "certificate", fmt.Sprintf("%s expires in %d days (%s)", certFile, int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.DateOnly)),
			"renew it soon; 'gatehouse reload' picks up the new files")
	case leaf.NotBefore.After(d.now):
		d.add(levelFail, "certificate", fmt.Sprintf("%s is not valid before %s", certFile, leaf.NotBefore.UTC()), "check the system clock or the certificate")
	default:
		d.add(levelOK, "certificate", fmt.Sprintf("%s valid until %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly)), "")
	}
	for _, h := range d.cfg.Hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			d.add(levelFail, "certificate", fmt.Sprintf("%s does not cover %s (names: %s)", certFile, h, strings.Join(leaf.DNSNames, ", ")),
				"get a certificate whose subjectAltName includes "+h)
		}
	}
	if generated {
		d.add(levelWarn, "certificate", "the certificate is the generated self-signed one",
			"fine for testing; for production set tls.cert_file and tls.key_file to a CA-issued certificate")
		return
	}
	pool := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Intermediates: pool, CurrentTime: d.now}); err != nil {
		d.add(levelWarn, "certificate", fmt.Sprintf("%s does not verify against the system CAs: %v", certFile, err),
			"clients and other servers will not trust it; use a CA-issued certificate with its full chain in tls.cert_file")
	}
}

// checkDNS looks up the SRV records of every host.
func (d *doctor) checkDNS(ctx context.Context) {
	type rec struct{ service, port, why string }
	recs := []rec{{"xmpp-client", "5222", "clients"}}
	if d.cfg.S2S.Enabled {
		recs = append(recs, rec{"xmpp-server", "5269", "other servers"})
	}
	for _, h := range d.cfg.Hosts {
		if h == "localhost" || strings.HasSuffix(h, ".localhost") || !strings.Contains(h, ".") {
			d.add(levelWarn, "dns", h+" is not a public domain name; nothing outside this machine can find it", "use your real domain in hosts (gatehouse init DOMAIN)")
			continue
		}
		for _, r := range recs {
			name := fmt.Sprintf("_%s._tcp.%s", r.service, h)
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, srvs, err := d.resolver.LookupSRV(lctx, r.service, "tcp", h)
			cancel()
			var dnsErr *net.DNSError
			switch {
			case err == nil && len(srvs) > 0:
				targets := make([]string, 0, len(srvs))
				for _, s := range srvs {
					targets = append(targets, fmt.Sprintf("%s:%d", strings.TrimSuffix(s.Target, "."), s.Port))
				}
				d.add(levelOK, "dns", name+" → "+strings.Join(targets, ", "), "")
			case err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound:
				level := levelWarn
				if r.service == "xmpp-server" {
					level = levelFail // other servers fall back to the bare domain, which is often the web server
				}
				d.add(level, "dns", "no SRV record "+name+" ("+r.why+" fall back to "+h+":"+r.port+")",
					fmt.Sprintf("add to the %s zone: %s. 3600 IN SRV 5 0 %s xmpp.%s.", h, name, r.port, h))
			default:
				d.add(levelWarn, "dns", fmt.Sprintf("looking up %s: %v", name, err), "check the resolver (or give --dns)")
			}
		}
	}
}

// checkPorts checks that each listener answers (server running) or can be
// bound (server stopped).
func (d *doctor) checkPorts(ctx context.Context) {
	running := false
	if p := d.cfg.AdminSocketPath(); p != "" {
		running = admin.NewClient(p).Running(ctx)
	}
	addrs := append(append([]string{}, d.cfg.C2S.Listen...), d.cfg.C2S.ListenTLS...)
	if d.cfg.S2S.Enabled {
		addrs = append(append(addrs, d.cfg.S2S.Listen...), d.cfg.S2S.ListenTLS...)
	}
	if len(d.cfg.Components.Transports) > 0 {
		addrs = append(addrs, d.cfg.Components.Listen...)
	}
	if d.cfg.Upload.Enabled && d.cfg.Upload.Listen != "" {
		addrs = append(addrs, d.cfg.Upload.Listen)
	}
	if d.cfg.Web.Enabled && d.cfg.Web.Listen != "" {
		addrs = append(addrs, d.cfg.Web.Listen)
	}
	for _, a := range addrs {
		if strings.HasSuffix(a, ":0") {
			continue
		}
		if running {
			dial := a
			if host, port, err := net.SplitHostPort(a); err == nil && (host == "0.0.0.0" || host == "::" || host == "") {
				dial = net.JoinHostPort("127.0.0.1", port)
			}
			c, err := net.DialTimeout("tcp", dial, 3*time.Second)
			if err != nil {
				d.add(levelFail, "ports", fmt.Sprintf("%s: the running server does not answer: %v", a, err), "look at the server log for the listener error")
				continue
			}
			_ = c.Close()
			d.add(levelOK, "ports", a+" answers", "")
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			d.add(levelFail, "ports", fmt.Sprintf("%s cannot be bound: %v", a, err),
				"another process holds it (ss -ltnp) or ports below 1024 need CAP_NET_BIND_SERVICE; change the listener or free the port")
			continue
		}
		_ = ln.Close()
		d.add(levelOK, "ports", a+" is free", "")
	}
	if running {
		d.add(levelOK, "ports", "the server is running (admin socket answers)", "")
	}
}

// checkPermissions wants the data directory and secrets private.
func (d *doctor) checkPermissions() {
	dir := d.cfg.DataDir
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		d.add(levelWarn, "permissions", dir+" does not exist yet; the server creates it (mode 0700) at first start", "")
		return
	}
	if err != nil {
		d.add(levelFail, "permissions", err.Error(), "make the data directory readable by the server's user")
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		d.add(levelFail, "permissions", fmt.Sprintf("%s is mode %04o: other users can reach the databases", dir, fi.Mode().Perm()), "chmod 700 "+dir)
	} else {
		d.add(levelOK, "permissions", fmt.Sprintf("%s is mode %04o", dir, fi.Mode().Perm()), "")
	}
	private := []string{server.DBFile, "auth-secret", "dialback-secret", filepath.Join("tls", "key.pem"),
		d.cfg.MAM.File, d.cfg.Archive.File}
	if d.cfg.TLS.KeyFile != "" {
		private = append(private, d.cfg.TLS.KeyFile)
	}
	if d.cfg.Admin.TokenFile != "" {
		private = append(private, d.cfg.Admin.TokenFile)
	}
	for _, name := range private {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			continue // not created yet
		}
		if fi.Mode().Perm()&0o077 != 0 {
			d.add(levelFail, "permissions", fmt.Sprintf("%s is mode %04o: it holds secrets or private conversations", p, fi.Mode().Perm()), "chmod 600 "+p)
		}
	}
}

// checkArchive verifies the compliance archive's hash chain.
func (d *doctor) checkArchive(ctx context.Context) {
	p := d.cfg.Archive.Path(d.cfg.DataDir, d.cfg.Archive.File)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		d.add(levelOK, "archive", p+" not created yet (the server creates it at first start)", "")
		return
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := server.OpenArchive(ctx, d.cfg, log)
	if err != nil {
		d.add(levelFail, "archive", err.Error(), "see docs/archive.md; the archive must open for the server to start with on_archive_failure: refuse")
		return
	}
	defer func() { _ = a.Close(ctx) }()
	rep, err := a.Verify(ctx, archive.VerifyOptions{})
	if err != nil {
		d.add(levelFail, "archive", "verification could not run: "+err.Error(), "")
		return
	}
	if len(rep.Problems) > 0 {
		d.add(levelFail, "archive", fmt.Sprintf("%s: %d problem(s), first: %s", p, len(rep.Problems)+rep.Omitted, rep.Problems[0]),
			"the archive was altered outside Gatehouse; keep the file as evidence and run 'gatehouse archive verify' for the full report")
		return
	}
	d.add(levelOK, "archive", fmt.Sprintf("%s: %d rows verify, head %.12s…", p, rep.Rows, rep.Head), "")
}
