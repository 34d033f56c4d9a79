package mam

import (
	"strings"
	"testing"
)

// FuzzParseQuery feeds arbitrary query payloads (form and RSM included)
// to the parser: it must never panic, and whatever it accepts must respect
// the bounds that protect the store and the client's send queue.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		query(""),
		query(form(`<field var='with'><value>juliet@capulet.lit/balcony</value></field>`)),
		query(form(`<field var='start'><value>2010-06-07T00:00:00Z</value></field><field var='end'><value>2010-07-07T13:23:54.123+02:00</value></field>`)),
		query(form(`<field var='ids'><value>a</value><value>b</value></field><field var='after-id'><value>c</value></field>`)),
		query(rsm(`<max>10</max><after>x</after>`)),
		query(rsm(`<max>10</max><before/>`) + `<flip-page/>`),
		query(rsm(`<index>3</index>`)),
		query(form(`<field var='x-unknown'/>`)),
	} {
		f.Add(s)
	}
	const maxPage = 50
	f.Fuzz(func(t *testing.T, s string) {
		el, err := decodeElement(s)
		if err != nil {
			return
		}
		req, qerr := parseQuery(el, maxPage)
		if qerr != nil {
			if qerr.cond == "" {
				t.Fatalf("error without a condition: %v", qerr)
			}
			return
		}
		switch {
		case req.Page.Max < 0 || req.Page.Max > maxPage:
			t.Fatalf("page size %d escapes 0..%d", req.Page.Max, maxPage)
		case len(req.Filter.IDs) > maxPage:
			t.Fatalf("%d ids accepted", len(req.Filter.IDs))
		case len(req.QueryID) > MaxQueryIDLen:
			t.Fatalf("queryid of %d bytes accepted", len(req.QueryID))
		case len(req.Page.After) > MaxIDLen || len(req.Page.Before) > MaxIDLen ||
			len(req.Filter.AfterID) > MaxIDLen || len(req.Filter.BeforeID) > MaxIDLen:
			t.Fatal("an over-long archive id was accepted")
		case req.Page.Before != "" && !req.Page.Backward:
			t.Fatal("before without backward paging")
		case req.Filter.WithRes != "" && req.Filter.With == "":
			t.Fatal("a resource without a JID")
		case !req.Filter.Start.IsZero() && req.Filter.Start.UnixMilli() < 0:
			t.Fatal("a start before 1970 went through unclamped")
		}
		for _, id := range req.Filter.IDs {
			if id == "" || strings.TrimSpace(id) != id {
				t.Fatalf("id %q not normalized", id)
			}
		}
	})
}

// FuzzParsePrefs checks the preferences parser the same way.
func FuzzParsePrefs(f *testing.F) {
	f.Add(`<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@montague.lit</jid></always><never><jid>montague.lit</jid></never></prefs>`)
	f.Add(`<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>x@y</jid></always><never><jid>x@y</jid></never></prefs>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := decodeElement(s)
		if err != nil {
			return
		}
		p, qerr := parsePrefs(el)
		if qerr != nil {
			return
		}
		if p.Default != DefaultAlways && p.Default != DefaultRoster && p.Default != DefaultNever {
			t.Fatalf("default %q accepted", p.Default)
		}
		if len(p.Always)+len(p.Never) > MaxPrefsJIDs {
			t.Fatal("too many JIDs accepted")
		}
		for _, j := range p.Always {
			for _, k := range p.Never {
				if j == k {
					t.Fatalf("%s on both lists", j)
				}
			}
		}
		for _, l := range [][]string{p.Always, p.Never} {
			for _, j := range l {
				if j == "" {
					t.Fatal("empty JID accepted")
				}
			}
		}
	})
}
