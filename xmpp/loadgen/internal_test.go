package loadgen

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
)

// oneByte reads one byte at a time, so every element is split at every
// possible position.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

const streamText = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='x' version='1.0'>` +
	`<stream:features><starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>` +
	"\n \t" +
	`<message from='a@localhost/r' to="b@localhost/s" id='i>d' type='chat'><body>1 23 x&amp;y</body><!-- c<> --><x xmlns='y'><![CDATA[<not/>]]></x></message>` +
	` <presence from='c@localhost/r'/>` +
	`<iq type='result' id='rg'><query xmlns='jabber:iq:roster'><item jid='a@localhost' subscription='both'><group>g</group></item><item jid="b@localhost" subscription="to"/></query></iq>` +
	`</stream:stream>`

func TestReaderSplitsElements(t *testing.T) {
	for _, src := range []io.Reader{strings.NewReader(streamText), oneByte{strings.NewReader(streamText)}} {
		r := NewReader(src)
		h, err := r.StreamHeader()
		if err != nil || h.AttrString("id") != "x" {
			t.Fatalf("header: %v %q", err, h.Raw)
		}
		var names []string
		var els []string
		for {
			e, err := r.Next()
			if errors.Is(err, ErrStreamClosed) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, string(e.Name()))
			els = append(els, string(e.Raw))
			switch {
			case e.Is("features"):
				if !e.Has("required") || !bytes.Contains(e.Raw, []byte("xmpp-tls")) {
					t.Errorf("features: %s", e.Raw)
				}
				ms, _ := e.Child("mechanisms")
				var got []string
				ms.Children(func(m Elem) { got = append(got, string(m.Text())) })
				if strings.Join(got, ",") != "SCRAM-SHA-1,SCRAM-SHA-256" {
					t.Errorf("mechanisms %v", got)
				}
			case e.Is("message"):
				if e.AttrString("id") != "i>d" || e.AttrString("to") != "b@localhost/s" || string(bareFrom(e)) != "a@localhost" {
					t.Errorf("message attrs: %s", e.Raw)
				}
				b, _ := e.Child("body")
				if string(b.Text()) != "1 23 x&amp;y" {
					t.Errorf("body %q", b.Text())
				}
				if s, at, ok := parseBody(b.Text()); !ok || s != 1 || at != 23 {
					t.Errorf("parseBody: %d %d %v", s, at, ok)
				}
			case e.Is("presence"):
				if !presenceAvailable(e) {
					t.Errorf("presence not available: %s", e.Raw)
				}
			case e.Is("iq"):
				var items []string
				rosterItems(e, func(j, s []byte) { items = append(items, string(j)+"="+string(s)) })
				if strings.Join(items, " ") != "a@localhost=both b@localhost=to" {
					t.Errorf("roster items %v", items)
				}
			}
		}
		if strings.Join(names, " ") != "stream:features message presence iq" {
			t.Fatalf("elements %v", names)
		}
		if !strings.HasSuffix(els[1], "</message>") || !strings.HasPrefix(els[1], "<message") {
			t.Fatalf("message raw %q", els[1])
		}
	}
}

func TestReaderBoundsElementSize(t *testing.T) {
	big := "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message><body>" + strings.Repeat("x", 2*maxElement)
	r := NewReader(strings.NewReader(big))
	if _, err := r.StreamHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("oversized element: %v", err)
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if got < c.want || got > c.want+c.want/100+time.Millisecond {
			t.Errorf("q%.2f = %v, want ≈ %v (never below)", c.q, got, c.want)
		}
	}
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	for us := int64(0); us < 1<<20; us = us*3/2 + 1 {
		b := bucketOf(us)
		if lowerOf(b) > us || lowerOf(b+1) <= us {
			t.Fatalf("bucket of %d: [%d, %d)", us, lowerOf(b), lowerOf(b+1))
		}
	}
}

// TestCachedSCRAMAgainstMellium runs the cached client against
// mellium.im/sasl's server, twice per account (the second from the cache),
// and checks a wrong password is refused.
func TestCachedSCRAMAgainstMellium(t *testing.T) {
	for _, c := range []struct {
		mech string
		m    sasl.Mechanism
		fn   func() hash.Hash
	}{{"SCRAM-SHA-1", sasl.ScramSha1, sha1.New}, {"SCRAM-SHA-256", sasl.ScramSha256, sha256.New}} {
		salt := []byte("0123456789abcdef")
		salted := sasl.SCRAMSaltPassword(c.fn, []byte("pencil"), salt, 4096)
		var cache scramCache
		for round, pw := range []string{"pencil", "pencil", "wrong"} {
			srv := sasl.NewServer(c.m, func(*sasl.Negotiator) bool { return true },
				sasl.SaltedCredentials(func(u, _ []byte, _ string) ([]byte, []byte, int64, error) {
					if string(u) != "user" {
						return nil, nil, 0, errors.New("no user")
					}
					return salt, salted, 4096, nil
				}))
			cl, err := newCachedSCRAM(c.mech, "user", pw, &cache)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := cl.Step(nil)
			_, sfirst, err := srv.Step(first)
			if err != nil {
				t.Fatalf("%s: server first: %v", c.mech, err)
			}
			final, err := cl.Step(sfirst)
			if err != nil {
				t.Fatalf("%s: client final: %v", c.mech, err)
			}
			_, sfinal, err := srv.Step(final)
			if pw == "wrong" {
				if err == nil {
					t.Fatalf("%s: wrong password accepted", c.mech)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s round %d: server refused the proof: %v", c.mech, round, err)
			}
			if err := cl.Verify(sfinal); err != nil {
				t.Fatalf("%s: server signature: %v", c.mech, err)
			}
			if err := cl.Verify([]byte("v=AAAA")); err == nil {
				t.Fatalf("%s: bad server signature accepted", c.mech)
			}
		}
		if len(cache.m) != 2 {
			t.Fatalf("%s: cache holds %d entries, want 2 (right and wrong password)", c.mech, len(cache.m))
		}
	}
}

func TestContacts(t *testing.T) {
	n, d := 9, 4
	in := map[[2]int]bool{}
	for i := 0; i < n; i++ {
		cs := Contacts(i, n, d)
		if len(cs) != d {
			t.Fatalf("user %d: %v", i, cs)
		}
		for _, j := range cs {
			if j == i {
				t.Fatalf("user %d is its own contact", i)
			}
			in[[2]int{i, j}] = true
		}
	}
	for k := range in {
		if !in[[2]int{k[1], k[0]}] {
			t.Fatalf("not mutual: %v", k)
		}
	}
	if userIndex([]byte("fan12@localhost"), "fan") != 12 || userIndex([]byte("fan@localhost"), "fan") != -1 || userIndex([]byte("x1@localhost"), "fan") != -1 {
		t.Fatal("userIndex")
	}
}
