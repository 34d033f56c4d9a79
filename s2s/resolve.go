package s2s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
)

// DefaultPort is the s2s port used when a domain has no SRV records
// (RFC 6120 §3.2.2).
const DefaultPort = 5269

// Target is one place to connect to for a remote domain.
type Target struct {
	Host      string
	Port      uint16
	DirectTLS bool // XEP-0368: TLS from the first byte, ALPN xmpp-server
}

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))) }

func (t Target) String() string {
	if t.DirectTLS {
		return "tls://" + t.Addr()
	}
	return t.Addr()
}

// Resolver finds the targets of a remote domain.
type Resolver interface {
	Resolve(ctx context.Context, domain string) ([]Target, error)
}

// Resolution errors.
var (
	// ErrNoService: the domain publishes SRV "." (RFC 2782: the service
	// is decidedly not available there).
	ErrNoService = errors.New("s2s: the domain offers no XMPP server-to-server service")
)

// SRVLookup is the part of *net.Resolver DNSResolver uses.
type SRVLookup interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// DNSResolver resolves domains with static routes first, then DNS SRV
// records for both _xmpps-server._tcp (direct TLS, XEP-0368) and
// _xmpp-server._tcp, and falls back to the domain itself on port 5269 when
// neither exists (RFC 6120 §3.2).
type DNSResolver struct {
	mu     sync.RWMutex
	dns    SRVLookup // nil: net.DefaultResolver
	static map[string]Target
}

// NewDNSResolver returns a resolver with static routes (domain → target).
func NewDNSResolver(dns SRVLookup, static map[string]Target) *DNSResolver {
	r := &DNSResolver{dns: dns, static: make(map[string]Target, len(static))}
	for d, t := range static {
		r.static[d] = t
	}
	return r
}

// SetRoute adds or replaces (or, with a zero Target, removes) a static
// route at run time.
func (r *DNSResolver) SetRoute(domain string, t Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t == (Target{}) {
		delete(r.static, domain)
		return
	}
	r.static[domain] = t
}

// SetDNS replaces the SRV resolver (nil: net.DefaultResolver), e.g. with a
// *net.Resolver that asks a particular name server.
func (r *DNSResolver) SetDNS(dns SRVLookup) {
	r.mu.Lock()
	r.dns = dns
	r.mu.Unlock()
}

// Resolve implements Resolver.
func (r *DNSResolver) Resolve(ctx context.Context, domain string) ([]Target, error) {
	r.mu.RLock()
	t, ok := r.static[domain]
	dns := r.dns
	r.mu.RUnlock()
	if ok {
		return []Target{t}, nil
	}
	if dns == nil {
		dns = net.DefaultResolver
	}
	type answer struct {
		srvs []*net.SRV
		err  error
	}
	// Both lookups at once: a slow resolver costs one round trip, not two.
	var direct, starttls answer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, direct.srvs, direct.err = dns.LookupSRV(ctx, "xmpps-server", "tcp", domain)
	}()
	go func() {
		defer wg.Done()
		_, starttls.srvs, starttls.err = dns.LookupSRV(ctx, "xmpp-server", "tcp", domain)
	}()
	wg.Wait()
	return mergeSRV(domain, direct.srvs, starttls.srvs)
}

// mergeSRV combines the two SRV answers. Records are tried in priority
// order (weights already applied by the lookup); at equal priority direct
// TLS goes first, as it saves a round trip (XEP-0368 §3).
func mergeSRV(domain string, direct, starttls []*net.SRV) ([]Target, error) {
	type rec struct {
		t    Target
		prio uint16
		seq  int
	}
	var recs []rec
	dead := 0
	add := func(srvs []*net.SRV, tls bool) {
		for _, s := range srvs {
			host := trimDot(s.Target)
			if host == "" {
				dead++ // "." : no service here
				continue
			}
			recs = append(recs, rec{t: Target{Host: host, Port: s.Port, DirectTLS: tls}, prio: s.Priority, seq: len(recs)})
		}
	}
	add(direct, true)
	add(starttls, false)
	if len(recs) > 0 {
		sort.SliceStable(recs, func(i, j int) bool {
			if recs[i].prio != recs[j].prio {
				return recs[i].prio < recs[j].prio
			}
			if recs[i].t.DirectTLS != recs[j].t.DirectTLS {
				return recs[i].t.DirectTLS
			}
			return recs[i].seq < recs[j].seq
		})
		out := make([]Target, len(recs))
		for i, r := range recs {
			out[i] = r.t
		}
		return out, nil
	}
	if dead > 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoService, domain)
	}
	// No records (or a failed lookup, which an NXDOMAIN for the _service
	// label looks like): the domain itself on the default port. The
	// address lookup of the dial gives the definitive answer.
	return []Target{{Host: domain, Port: DefaultPort}}, nil
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}
