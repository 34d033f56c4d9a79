package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"sync/atomic"
)

// Reloader holds the current certificate and hands it out to new
// connections; Reload (on SIGHUP) re-reads it. Connections already
// established keep the certificate they were handshaken with.
//
// Two ways to use it:
//   - Config returns one stable tls.Config whose GetCertificate returns the
//     current certificate; good for listeners.
//   - Current returns the configuration of the current certificate together
//     with its leaf, for a server that needs to know exactly which
//     certificate a connection presents (tls-server-end-point channel
//     binding): take Current once per accepted connection and handshake
//     with that configuration.
type Reloader struct {
	opts    Options
	version uint16
	cfg     *tls.Config

	mu  sync.Mutex // serialises Reload
	cur atomic.Pointer[generation]
}

// generation is one loaded certificate with the config that serves it.
type generation struct {
	cert *tls.Certificate
	cfg  *tls.Config
}

// NewReloader loads the certificate described by o like Load.
func NewReloader(o Options) (*Reloader, error) {
	v, err := minVersion(o.MinVersion)
	if err != nil {
		return nil, err
	}
	o.Hosts = append([]string(nil), o.Hosts...)
	r := &Reloader{opts: o, version: v}
	r.cfg = baseConfig(v)
	r.cfg.GetCertificate = r.GetCertificate
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the certificate and key (or the generated pair, creating
// a new one if hosts are no longer covered). On error the previous
// certificate stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cert, err := loadCertificate(r.opts)
	if err != nil {
		return err
	}
	cfg := baseConfig(r.version)
	cfg.Certificates = []tls.Certificate{*cert}
	r.cur.Store(&generation{cert: cert, cfg: cfg})
	return nil
}

// GetCertificate returns the current certificate; it is the
// tls.Config.GetCertificate of Config.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().cert, nil
}

// Config returns the stable server configuration that always presents the
// current certificate. The same value is returned on every call; do not
// modify it.
func (r *Reloader) Config() *tls.Config { return r.cfg }

// Leaf returns the current leaf certificate.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Current returns a server configuration fixed to the current certificate,
// and that certificate's leaf. The configuration is shared by every caller
// until the next successful Reload; do not modify it.
func (r *Reloader) Current() (*tls.Config, *x509.Certificate) {
	g := r.cur.Load()
	return g.cfg, g.cert.Leaf
}
