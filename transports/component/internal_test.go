package component

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

func TestHandshakeValue(t *testing.T) {
	// Expected values computed independently (Python hashlib.sha1).
	cases := []struct{ id, secret, want string }{
		{"3BF96D32", "sh4k3sp34r3-s3cr3t", "fadfae782d806af620333cf61f698a83aa1e59f9"},
		{"id1", "pässwörd-ünïcode!", "e515f337cc02dbc5d6a857793127ee64e8bcb590"},
	}
	for _, tc := range cases {
		if got := Handshake(tc.id, []byte(tc.secret)); got != tc.want {
			t.Errorf("Handshake(%q, %q) = %s, want %s", tc.id, tc.secret, got, tc.want)
		}
	}
}

func parse(t *testing.T, s string) *stanza.Stanza {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	st, err := stanza.Parse(d, tok.(xml.StartElement))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCheck(t *testing.T) {
	cases := []struct {
		xml  string
		want stanza.Condition
	}{
		{`<message type='chat'/>`, ""},
		{`<message/>`, ""},
		{`<message type='bogus'/>`, stanza.BadRequest},
		{`<presence/>`, ""},
		{`<presence type='probe'/>`, ""},
		{`<presence type='available'/>`, stanza.BadRequest},
		{`<iq type='get' id='1'><q xmlns='x'/></iq>`, ""},
		{`<iq type='result' id='1'/>`, ""},
		{`<iq type='get' id='1'/>`, stanza.BadRequest},
		{`<iq type='set' id='1'><a xmlns='x'/><b xmlns='x'/></iq>`, stanza.BadRequest},
		{`<iq type='get'><q xmlns='x'/></iq>`, stanza.BadRequest},
		{`<iq id='1'><q xmlns='x'/></iq>`, stanza.BadRequest},
	}
	for _, tc := range cases {
		if got, _ := check(parse(t, tc.xml)); got != tc.want {
			t.Errorf("check(%s) = %q, want %q", tc.xml, got, tc.want)
		}
	}
}

func TestOfflineDisco(t *testing.T) {
	const info = `<query xmlns='http://jabber.org/protocol/disco#info'/>`
	gw := &Component{Domain: "irc.example", Name: "IRC", Type: "irc"}
	cases := []struct {
		name      string
		comp      *Component
		xml       string
		wantIdent string // category/type/name, "" = no answer
	}{
		{"gateway", gw, `<iq type='get' id='1' to='irc.example'>` + info + `</iq>`, "gateway/irc/IRC"},
		{"name only", &Component{Name: "Bridge"}, `<iq type='get' id='1' to='b.example'>` + info + `</iq>`, "component/generic/Bridge"},
		{"nothing configured", &Component{}, `<iq type='get' id='1' to='b.example'>` + info + `</iq>`, ""},
		{"to a user at the gateway", gw, `<iq type='get' id='1' to='bob@irc.example'>` + info + `</iq>`, ""},
		{"with a node", gw, `<iq type='get' id='1' to='irc.example'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>`, ""},
		{"items", gw, `<iq type='get' id='1' to='irc.example'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, ""},
		{"set", gw, `<iq type='set' id='1' to='irc.example'>` + info + `</iq>`, ""},
		{"message", gw, `<message to='irc.example'/>`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := offlineDisco(tc.comp, parse(t, tc.xml))
			if tc.wantIdent == "" {
				if r != nil {
					t.Fatalf("answered %s", r)
				}
				return
			}
			if r == nil || r.Type != "result" {
				t.Fatalf("got %v", r)
			}
			id := r.Payload().Child("", "identity")
			got := id.AttrValue("category") + "/" + id.AttrValue("type") + "/" + id.AttrValue("name")
			if got != tc.wantIdent {
				t.Fatalf("identity %s, want %s", got, tc.wantIdent)
			}
		})
	}
}

func TestNewRejectsDuplicates(t *testing.T) {
	_, err := New(Config{Components: []Component{{Domain: "a.example"}, {Domain: "a.example"}}},
		logrus.New(), nil, new(atomic.Uint64))
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
}

// zeroRand makes every stream id 32 zeros, so seeds can carry a valid
// handshake and reach the authenticated read loop.
type zeroRand struct{}

func (zeroRand) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

const fuzzSecret = "fuzz-secret-0123456789"

// FuzzStream feeds arbitrary bytes to a component stream, in two writes
// split at an arbitrary point: it must neither panic nor hang, and must
// never route a stanza whose 'from' is outside the component's domain.
func FuzzStream(f *testing.F) {
	id := strings.Repeat("0", 32)
	hs := `<handshake>` + Handshake(id, []byte(fuzzSecret)) + `</handshake>`
	hdr := `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='irc.example'>`
	for _, seed := range []string{
		hdr + hs + `<message from='a@irc.example' to='u@localhost'><body>hi</body></message></stream:stream>`,
		hdr + hs + `<message from='a@evil.example' to='u@localhost'/>`,
		hdr + hs + `<iq from='irc.example' to='localhost' type='result' id='gh-idle-ping'/>`,
		hdr + hs + `<presence from='a@irc.example' to='u@localhost' type='x'/><foo/>`,
		hdr + `<handshake>00</handshake>`,
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='irc.example'>`,
		"\xef\xbb\xbf<?xml version='1.0'?>" + hdr + hs,
		`GET / HTTP/1.1`,
	} {
		f.Add([]byte(seed), uint16(len(seed)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		r := &routeCheck{}
		h, err := New(Config{
			Components:       []Component{{Domain: "irc.example", Secret: []byte(fuzzSecret)}},
			Limits:           conn.Limits{MaxStanzaBytes: 10000, MaxDepth: 16, SendQueue: 100, SendQueueBytes: 1 << 20},
			HandshakeTimeout: 2 * time.Second,
			ServerDomain:     "localhost",
			Rand:             zeroRand{},
		}, quietLog(), r, new(atomic.Uint64))
		if err != nil {
			t.Fatal(err)
		}
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.handle(context.Background(), server)
		}()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, client)
		}()
		cut := min(int(split), len(in))
		_, _ = client.Write(in[:cut])
		_, _ = client.Write(in[cut:])
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("stream did not end")
		}
		wg.Wait()
		if bad := r.bad.Load(); bad != nil {
			t.Fatalf("routed a stanza from %s", *bad)
		}
	})
}

// routeCheck records a routed stanza from outside the component's domain.
type routeCheck struct{ bad atomic.Pointer[string] }

func (r *routeCheck) Route(_ context.Context, env *router.Envelope) error {
	if env.Stanza.From.Domainpart() != "irc.example" || env.Src.Domain != "irc.example" || env.Src.Zone != router.ZoneTransport {
		s := env.Stanza.From.String()
		r.bad.Store(&s)
	}
	return nil
}

func (r *routeCheck) Forward(context.Context, *router.Envelope) error { return nil }

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
