package interop

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers A and SRV queries for the test domains over UDP on
// 127.0.0.1; every other name is NXDOMAIN, so a peer never looks beyond
// this machine.
type dnsServer struct {
	pc   net.PacketConn
	mu   sync.Mutex
	a    map[string]bool                     // names that resolve to 127.0.0.1
	srv  map[string][]dnsmessage.SRVResource // "_xmpp-server._tcp.domain."
	done chan struct{}
	log  func(format string, args ...any)
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{pc: pc, a: map[string]bool{}, srv: map[string][]dnsmessage.SRVResource{}, done: make(chan struct{}), log: t.Logf}
	go d.serve()
	t.Cleanup(func() {
		_ = pc.Close()
		<-d.done
	})
	return d
}

// Addr is host:port of the server.
func (d *dnsServer) Addr() *net.UDPAddr { return d.pc.LocalAddr().(*net.UDPAddr) }

// SRV targets. The peers' own resolvers differ: ejabberd resolves SRV
// targets with the C library (getaddrinfo), which would ask the system's
// resolvers for a made-up name, so records the peers read (Gatehouse's)
// name the address itself. Go's resolver, which reads the peers' records,
// refuses numeric targets; "localhost" it finds in /etc/hosts.
const (
	targetForPeers     = "127.0.0.1."
	targetForGatehouse = "localhost."
)

// addServer publishes domain at 127.0.0.1 with an _xmpp-server SRV
// record for port with target.
func (d *dnsServer) addServer(domain string, port int, target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fq := dnsName(domain)
	d.a[fq] = true
	d.srv["_xmpp-server._tcp."+fq] = []dnsmessage.SRVResource{{Priority: 0, Weight: 0, Port: uint16(port), Target: dnsmessage.MustNewName(target)}}
}

// addDirectTLS publishes an _xmpps-server SRV record (XEP-0368) for
// domain at port with target.
func (d *dnsServer) addDirectTLS(domain string, port int, target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv["_xmpps-server._tcp."+dnsName(domain)] = []dnsmessage.SRVResource{{Priority: 0, Weight: 0, Port: uint16(port), Target: dnsmessage.MustNewName(target)}}
}

// resolver returns a Go resolver that asks only this server.
func (d *dnsServer) resolver() *net.Resolver {
	addr := d.Addr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", addr)
	}}
}

func dnsName(s string) string {
	s = strings.ToLower(s)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func (d *dnsServer) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, addr, err := d.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.pc.WriteTo(resp, addr)
		}
	}
}

func (d *dnsServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	known := d.a[name]
	srvs := d.srv[name]
	d.mu.Unlock()
	d.log("dns: %s %s (known %v, %d SRV)", q.Type, name, known, len(srvs))
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known && srvs == nil {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch {
	case q.Type == dnsmessage.TypeA && known:
		if err := b.AResource(rr, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
	case q.Type == dnsmessage.TypeSRV:
		for _, s := range srvs {
			if err := b.SRVResource(rr, s); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}
