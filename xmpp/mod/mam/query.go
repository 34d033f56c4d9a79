package mam

import (
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// Namespaces.
const (
	NS         = "urn:xmpp:mam:2"
	NSExtended = "urn:xmpp:mam:2#extended"
	NSSID      = "urn:xmpp:sid:0"
	NSRSM      = "http://jabber.org/protocol/rsm"
	NSData     = "jabber:x:data"
	NSValidate = "http://jabber.org/protocol/xdata-validate"
	NSForward  = "urn:xmpp:forward:0"
)

// Bounds on what a query may carry, beyond the page size.
const (
	// MaxQueryIDLen bounds the queryid, which is echoed in every result.
	MaxQueryIDLen = 256
	// MaxIDLen bounds an archive id in a query; ours are 16 characters.
	MaxIDLen = 128
	// maxFields bounds the fields of a query form (six are defined).
	maxFields = 16
)

// queryError is a query the server refuses, with the stanza error to send.
type queryError struct {
	cond stanza.Condition
	text string
}

func (e *queryError) Error() string { return string(e.cond) + ": " + e.text }

func badRequest(text string) *queryError {
	return &queryError{cond: stanza.BadRequest, text: text}
}

// request is a parsed archive query.
type request struct {
	QueryID string
	Filter  Filter
	Page    Page
	Flip    bool // <flip-page/>: send the page newest first
}

// parseQuery reads <query xmlns='urn:xmpp:mam:2'> of an iq set.
// maxPage caps the page size and the ids list; a query without an RSM max
// gets maxPage results.
func parseQuery(q *stanza.Element, maxPage int) (request, *queryError) {
	req := request{QueryID: q.AttrValue("queryid"), Page: Page{Max: maxPage}}
	if len(req.QueryID) > MaxQueryIDLen {
		return req, badRequest("queryid is too long")
	}
	if q.AttrValue("node") != "" {
		// Pubsub node archives (XEP-0442) are not served by accounts.
		return req, &queryError{cond: stanza.FeatureNotImplemented, text: "node archives are not supported"}
	}
	var form, set *stanza.Element
	for _, c := range q.Elements() {
		switch {
		case c.Name.Space == NSData && c.Name.Local == "x":
			if form != nil {
				return req, badRequest("a query carries one form")
			}
			form = c
		case c.Name.Space == NSRSM && c.Name.Local == "set":
			if set != nil {
				return req, badRequest("a query carries one result set")
			}
			set = c
		case c.Name.Space == NS && c.Name.Local == "flip-page":
			req.Flip = true
		}
	}
	if form != nil {
		f, err := parseForm(form, maxPage)
		if err != nil {
			return req, err
		}
		req.Filter = f
	}
	if set != nil {
		p, err := parseRSM(set, maxPage)
		if err != nil {
			return req, err
		}
		req.Page = p
	}
	return req, nil
}

// parseForm reads the XEP-0004 form of a query (XEP-0313 §4.1).
func parseForm(x *stanza.Element, maxPage int) (Filter, *queryError) {
	var f Filter
	if t := x.AttrValue("type"); t != "submit" && t != "" {
		return f, badRequest("the query form must be of type submit")
	}
	fields := x.Elements()
	if len(fields) > maxFields {
		return f, badRequest("too many fields in the query form")
	}
	seen := make(map[string]bool, len(fields))
	formType := false
	for _, fe := range fields {
		if fe.Name.Local != "field" || fe.Name.Space != NSData {
			continue // title, instructions, ...: nothing to do
		}
		v := fe.AttrValue("var")
		if seen[v] {
			return f, badRequest("field " + strconv.Quote(v) + " appears twice")
		}
		seen[v] = true
		values := fieldValues(fe)
		if v != "ids" && len(values) > 1 {
			return f, badRequest("field " + strconv.Quote(v) + " takes one value")
		}
		one := ""
		if len(values) == 1 {
			one = strings.TrimSpace(values[0])
		}
		switch v {
		case "FORM_TYPE":
			if one != NS {
				return f, badRequest("FORM_TYPE must be " + NS)
			}
			formType = true
		case "with":
			if one == "" {
				continue
			}
			j, err := jid.Parse(one)
			if err != nil {
				return f, &queryError{cond: stanza.JIDMalformed, text: "the with field is not a valid JID"}
			}
			f.With = j.Bare().String()
			f.WithRes = j.Resourcepart()
		case "start", "end":
			if one == "" {
				continue
			}
			t, err := parseDateTime(one)
			if err != nil {
				return f, badRequest("field " + v + " is not a XEP-0082 DateTime")
			}
			if v == "start" {
				f.Start = t
			} else {
				f.End = t
			}
		case "after-id", "before-id":
			if len(one) > MaxIDLen {
				return f, &queryError{cond: stanza.ItemNotFound, text: "no such archive id"}
			}
			if v == "after-id" {
				f.AfterID = one
			} else {
				f.BeforeID = one
			}
		case "ids":
			if len(values) > maxPage {
				return f, &queryError{cond: stanza.PolicyViolation, text: "too many ids: at most " + strconv.Itoa(maxPage)}
			}
			for _, id := range values {
				id = strings.TrimSpace(id)
				if id == "" {
					continue
				}
				if len(id) > MaxIDLen {
					return f, &queryError{cond: stanza.ItemNotFound, text: "no such archive id"}
				}
				f.IDs = append(f.IDs, id)
			}
		default:
			// XEP-0313 §4.1.5: a field the server does not know.
			return f, &queryError{cond: stanza.FeatureNotImplemented, text: "unsupported query field " + strconv.Quote(v)}
		}
	}
	if !formType {
		return f, badRequest("the query form needs FORM_TYPE " + NS)
	}
	// An end before the start is an empty result set, not an error.
	return f, nil
}

func fieldValues(fe *stanza.Element) []string {
	var out []string
	for _, c := range fe.Elements() {
		if c.Name.Local == "value" && c.Name.Space == NSData {
			out = append(out, c.Text())
		}
	}
	return out
}

// parseDateTime reads a XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss]TZD).
// Stamps are compared to the millisecond, as they are stored.
func parseDateTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	// time.Time's zero value means "no bound"; the year 1 cannot be one.
	if t.Year() < 1970 {
		t = time.UnixMilli(0)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}

// parseRSM reads an XEP-0059 <set/> request.
func parseRSM(set *stanza.Element, maxPage int) (Page, *queryError) {
	p := Page{Max: maxPage}
	seen := map[string]bool{}
	for _, c := range set.Elements() {
		if c.Name.Space != NSRSM {
			continue
		}
		if seen[c.Name.Local] {
			return p, badRequest("<" + c.Name.Local + "/> appears twice in the result set request")
		}
		seen[c.Name.Local] = true
		text := strings.TrimSpace(c.Text())
		switch c.Name.Local {
		case "max":
			n, err := strconv.Atoi(text)
			if err != nil || n < 0 {
				return p, badRequest("max must be a non-negative integer")
			}
			// XEP-0059: the responder may return fewer items than asked.
			p.Max = min(n, maxPage)
		case "after":
			if text == "" {
				return p, badRequest("after needs an archive id")
			}
			if len(text) > MaxIDLen {
				return p, &queryError{cond: stanza.ItemNotFound, text: "no such archive id"}
			}
			p.After = text
		case "before":
			// <before/> (empty) asks for the last page.
			if len(text) > MaxIDLen {
				return p, &queryError{cond: stanza.ItemNotFound, text: "no such archive id"}
			}
			p.Before = text
			p.Backward = true
		case "index":
			// Out-of-order pages would cost a scan from the start.
			return p, &queryError{cond: stanza.FeatureNotImplemented, text: "paging by index is not supported; use after or before"}
		}
	}
	return p, nil
}

// stamp formats t as a XEP-0082 DateTime in UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// queryForm is the form returned for an iq get (XEP-0313 §4.1.5). No
// field is marked required, as the XEP demands.
func queryForm() *stanza.Element {
	x := stanza.NewElement(NSData, "x", "type", "form")
	x.Append(stanza.NewElement(NSData, "field", "type", "hidden", "var", "FORM_TYPE").
		Append(stanza.NewElement(NSData, "value").AppendText(NS)))
	x.Append(stanza.NewElement(NSData, "field", "type", "jid-single", "var", "with"))
	for _, v := range []string{"start", "end"} {
		x.Append(stanza.NewElement(NSData, "field", "type", "text-single", "var", v).
			Append(stanza.NewElement(NSValidate, "validate", "datatype", "xs:dateTime").
				Append(stanza.NewElement(NSValidate, "basic"))))
	}
	x.Append(stanza.NewElement(NSData, "field", "type", "text-single", "var", "before-id"))
	x.Append(stanza.NewElement(NSData, "field", "type", "text-single", "var", "after-id"))
	// §4.1.5: ids is an open list; the server must not enumerate it.
	x.Append(stanza.NewElement(NSData, "field", "type", "list-multi", "var", "ids").
		Append(stanza.NewElement(NSValidate, "validate", "datatype", "xs:string").
			Append(stanza.NewElement(NSValidate, "open"))))
	return stanza.NewElement(NS, "query").Append(x)
}

// finElement builds the iq result payload that ends a query. 'stable' is
// never false: archive order is insertion order and only the oldest end is
// ever deleted, so a page once served never changes.
func finElement(res Result) *stanza.Element {
	complete := "false"
	if res.Complete {
		complete = "true"
	}
	set := stanza.NewElement(NSRSM, "set")
	if n := len(res.Items); n > 0 {
		set.Append(
			stanza.NewElement(NSRSM, "first").AppendText(res.Items[0].ID),
			stanza.NewElement(NSRSM, "last").AppendText(res.Items[n-1].ID),
		)
	}
	set.Append(stanza.NewElement(NSRSM, "count").AppendText(strconv.Itoa(res.Count)))
	return stanza.NewElement(NS, "fin", "complete", complete).Append(set)
}
