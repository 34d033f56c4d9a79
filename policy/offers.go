package policy

import (
	"encoding/base64"
	"net/url"
	"path"
	"strconv"
	"strings"

	"gatehouse/xmpp/stanza"
)

// kindMask is a set of stanza kinds a selector can name.
type kindMask uint16

// Stanza kinds.
const (
	kindChat kindMask = 1 << iota
	kindNormal
	kindGroupchat
	kindHeadline
	kindError
	kindPresence
	kindSubscription
	kindMUCJoin
	kindIQ
	kindFile

	kindMessage = kindChat | kindNormal | kindGroupchat | kindHeadline
)

// Namespaces of the protocols the policy understands.
const (
	nsMUC        = "http://jabber.org/protocol/muc"
	nsOOBX       = "jabber:x:oob"
	nsOOBIQ      = "jabber:iq:oob"
	nsSI         = "http://jabber.org/protocol/si"
	nsSIFile     = "http://jabber.org/protocol/si/profile/file-transfer"
	nsJingle     = "urn:xmpp:jingle:1"
	nsJingleFT   = "urn:xmpp:jingle:apps:file-transfer:" // :3, :4, :5
	nsIBB        = "http://jabber.org/protocol/ibb"
	nsBoB        = "urn:xmpp:bob"
	nsSFS        = "urn:xmpp:sfs:0"
	nsFileMeta   = "urn:xmpp:file:metadata:0"
	nsURLData    = "http://jabber.org/protocol/url-data"
	nsPolicyNote = "urn:gatehouse:policy:0"
)

// classify returns the kinds of st, without file offers (see offers).
func classify(st *stanza.Stanza) kindMask {
	switch st.Kind {
	case stanza.KindMessage:
		switch st.Type {
		case "chat":
			return kindChat
		case "groupchat":
			return kindGroupchat
		case "headline":
			return kindHeadline
		case "error":
			return kindError
		}
		return kindNormal
	case stanza.KindPresence:
		switch st.Type {
		case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
			return kindSubscription
		case "error":
			return kindError
		case "":
			if st.Child(nsMUC, "x") != nil {
				return kindPresence | kindMUCJoin
			}
		}
		return kindPresence
	case stanza.KindIQ:
		if st.Type == "error" {
			return kindIQ | kindError
		}
		return kindIQ
	}
	return 0
}

// Mechanisms of file transfer, as FileOffer.Mechanism reports them.
const (
	MechUploadURL = "upload-url" // XEP-0363 link shared with XEP-0066 OOB or as an aesgcm:// body
	MechOOB       = "oob"        // XEP-0066 out-of-band data (message x or iq query)
	MechSFS       = "sfs"        // XEP-0447 stateless file sharing with XEP-0446 metadata
	MechJingle    = "jingle"     // XEP-0234 Jingle file transfer offer
	MechSI        = "si"         // XEP-0096 SI file transfer offer
	MechIBB       = "ibb"        // XEP-0047 in-band bytestream (open, data, close)
	MechBoB       = "bob"        // XEP-0231 bits of binary (inline)
	MechDataURI   = "data-uri"   // a data: URI in a body, OOB URL or SFS source (inline)
)

// FileOffer is one file (or chunk of one) a stanza carries or offers.
type FileOffer struct {
	Mechanism string
	Name      string // file name, or the last path segment of its URL
	MediaType string // lower case, without parameters; "" when unknown
	Size      int64  // bytes; -1 when unknown. For IBB data: the stream's total so far
	URL       string
	// SID and IBB say which in-band bytestream and step: "open", "data"
	// or "close".
	SID string
	IBB string
	// Data is the content when it crosses inline (data: URIs, BoB, an IBB
	// chunk), which is what can be scanned.
	Data []byte
	// ScannedAtUpload: the URL is a file on the built-in upload service
	// that the scanner found clean when it was uploaded.
	ScannedAtUpload bool
}

// Ext returns the offer's lower-case file name extension with its dot.
func (o *FileOffer) Ext() string {
	return strings.ToLower(path.Ext(o.Name))
}

// appendOffers appends the file offers st carries to out.
func appendOffers(out []FileOffer, st *stanza.Stanza) []FileOffer {
	switch st.Kind {
	case stanza.KindMessage:
		oob := false
		for _, c := range st.Children {
			e := c.El
			switch {
			case e == nil:
			case e.Name.Space == nsOOBX && e.Name.Local == "x":
				out = appendURLOffer(out, MechOOB, strings.TrimSpace(e.ChildText("", "url")), e.ChildText("", "desc"))
				oob = true
			case e.Name.Space == nsSFS && e.Name.Local == "file-sharing":
				out = appendSFS(out, e)
			case e.Name.Space == nsBoB && e.Name.Local == "data":
				out = appendBoB(out, e)
			case e.Name.Space == nsIBB:
				out = appendIBB(out, e)
			}
		}
		if !oob {
			// A body that is just an aesgcm:// link (OMEMO file sharing)
			// or a data: URI is a file; a plain https link may be any web
			// page, so it counts only when OOB marks it as a file.
			b := strings.TrimSpace(st.Body())
			if !strings.ContainsAny(b, " \t\n") {
				switch {
				case hasScheme(b, "aesgcm"):
					out = appendURLOffer(out, MechUploadURL, b, "")
				case hasScheme(b, "data"):
					out = appendURLOffer(out, MechDataURI, b, "")
				}
			}
		}
	case stanza.KindIQ:
		if st.Type != "set" {
			return out
		}
		p := st.Payload()
		if p == nil {
			return out
		}
		switch {
		case p.Name.Space == nsOOBIQ && p.Name.Local == "query":
			out = appendURLOffer(out, MechOOB, strings.TrimSpace(p.ChildText("", "url")), p.ChildText("", "desc"))
		case p.Name.Space == nsSI && p.Name.Local == "si":
			if f := p.Child(nsSIFile, "file"); f != nil {
				out = append(out, FileOffer{Mechanism: MechSI, Name: f.AttrValue("name"),
					MediaType: mediaType(p.AttrValue("mime-type")), Size: parseSize(f.AttrValue("size")), SID: p.AttrValue("id")})
			}
		case p.Name.Space == nsJingle && p.Name.Local == "jingle":
			if a := p.AttrValue("action"); a == "session-initiate" || a == "content-add" {
				out = appendJingle(out, p)
			}
		case p.Name.Space == nsIBB:
			out = appendIBB(out, p)
		}
	}
	return out
}

func hasScheme(u, scheme string) bool {
	return len(u) > len(scheme) && u[len(scheme)] == ':' && strings.EqualFold(u[:len(scheme)], scheme)
}

// appendURLOffer adds an offer for a URL; data: URIs become inline offers.
func appendURLOffer(out []FileOffer, mech, u, desc string) []FileOffer {
	if u == "" {
		return out
	}
	if hasScheme(u, "data") {
		mt, data, ok := parseDataURI(u)
		o := FileOffer{Mechanism: MechDataURI, MediaType: mt, Size: int64(len(data)), Data: data, Name: desc}
		if !ok {
			o.Size = -1
		}
		return append(out, o)
	}
	o := FileOffer{Mechanism: mech, URL: u, Size: -1}
	if pu, err := url.Parse(u); err == nil {
		if name := path.Base(pu.Path); name != "." && name != "/" {
			o.Name = name
		}
	}
	if hasScheme(u, "aesgcm") {
		o.Mechanism = MechUploadURL
	}
	return append(out, o)
}

// parseDataURI decodes an RFC 2397 data: URI.
func parseDataURI(u string) (mediaType string, data []byte, ok bool) {
	rest := u[len("data:"):]
	meta, payload, found := strings.Cut(rest, ",")
	if !found {
		return "", nil, false
	}
	params := strings.Split(meta, ";")
	mediaType = mediaTypeOr(params[0], "text/plain")
	if params[len(params)-1] == "base64" {
		data, err := decodeBase64(payload)
		return mediaType, data, err == nil
	}
	s, err := url.PathUnescape(payload)
	if err != nil {
		return mediaType, nil, false
	}
	return mediaType, []byte(s), true
}

func appendSFS(out []FileOffer, e *stanza.Element) []FileOffer {
	o := FileOffer{Mechanism: MechSFS, Size: -1}
	if f := e.Child(nsFileMeta, "file"); f != nil {
		o.Name = strings.TrimSpace(f.ChildText("", "name"))
		o.MediaType = mediaType(f.ChildText("", "media-type"))
		o.Size = parseSize(f.ChildText("", "size"))
	}
	if src := e.Child("", "sources"); src != nil {
		for _, s := range src.Elements() {
			if s.Name.Space == nsURLData && s.Name.Local == "url-data" {
				o.URL = s.AttrValue("target")
				break
			}
		}
	}
	if hasScheme(o.URL, "data") {
		inline := appendURLOffer(nil, MechDataURI, o.URL, "")
		if len(inline) == 1 {
			inline[0].Name = o.Name
			if o.MediaType != "" {
				inline[0].MediaType = o.MediaType
			}
			return append(out, inline[0])
		}
	}
	return append(out, o)
}

func appendBoB(out []FileOffer, e *stanza.Element) []FileOffer {
	data, err := decodeBase64(e.Text())
	o := FileOffer{Mechanism: MechBoB, MediaType: mediaType(e.AttrValue("type")), Size: int64(len(data)), Data: data, Name: e.AttrValue("cid")}
	if err != nil {
		o.Size, o.Data = -1, nil
	}
	return append(out, o)
}

func appendIBB(out []FileOffer, e *stanza.Element) []FileOffer {
	o := FileOffer{Mechanism: MechIBB, SID: e.AttrValue("sid"), Size: -1, IBB: e.Name.Local}
	switch e.Name.Local {
	case "open", "close":
	case "data":
		data, err := decodeBase64(e.Text())
		if err == nil {
			o.Data = data
			o.Size = int64(len(data))
		}
	default:
		return out
	}
	return append(out, o)
}

func appendJingle(out []FileOffer, j *stanza.Element) []FileOffer {
	for _, c := range j.Elements() {
		if c.Name.Local != "content" {
			continue
		}
		for _, d := range c.Elements() {
			if d.Name.Local != "description" || !strings.HasPrefix(d.Name.Space, nsJingleFT) {
				continue
			}
			f := d.Child("", "file")
			if f == nil {
				// file-transfer:3 wraps the file in <offer/>.
				if off := d.Child("", "offer"); off != nil {
					f = off.Child("", "file")
				}
			}
			if f == nil {
				continue
			}
			out = append(out, FileOffer{Mechanism: MechJingle, Name: strings.TrimSpace(f.ChildText("", "name")),
				MediaType: mediaType(f.ChildText("", "media-type")), Size: parseSize(f.ChildText("", "size")),
				SID: j.AttrValue("sid")})
		}
	}
	return out
}

func parseSize(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func mediaType(s string) string { return mediaTypeOr(s, "") }

func mediaTypeOr(s, def string) string {
	s, _, _ = strings.Cut(s, ";")
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return def
	}
	return s
}

// decodeBase64 accepts standard base64 with or without padding and with
// white space (IBB and BoB senders wrap lines).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	return base64.RawStdEncoding.DecodeString(s)
}

// typePattern is one entry of types/block_types: a media type (possibly
// "image/*") or a file name extension (".pdf").
type typePattern struct {
	mime string // "image/*", "application/pdf"
	ext  string // ".pdf"
}

func (t typePattern) match(o *FileOffer) bool {
	if t.ext != "" {
		return o.Ext() == t.ext
	}
	if o.MediaType == "" {
		return false
	}
	if prefix, ok := strings.CutSuffix(t.mime, "/*"); ok {
		return strings.HasPrefix(o.MediaType, prefix+"/")
	}
	return o.MediaType == t.mime
}

func (c *compiler) types(p string, in []string) []typePattern {
	out := make([]typePattern, 0, len(in))
	for i, s := range in {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case strings.HasPrefix(s, ".") && len(s) > 1 && !strings.ContainsAny(s, "/ *"):
			out = append(out, typePattern{ext: s})
		case strings.Count(s, "/") == 1 && !strings.HasPrefix(s, "/") && !strings.HasSuffix(s, "/") &&
			(!strings.Contains(s, "*") || strings.HasSuffix(s, "/*")) && s != "*/*":
			out = append(out, typePattern{mime: s})
		default:
			c.fail(p+"["+strconv.Itoa(i)+"]", "%q is not a media type (\"application/pdf\", \"image/*\") or an extension (\".pdf\")", in[i])
		}
	}
	return out
}

// violation says why offer o breaks file rule r's limits, or "" if it
// does not. A rule without limits matches every offer.
func (r *rule) violation(o *FileOffer) string {
	if !r.limits {
		return "file transfer"
	}
	if r.maxSize >= 0 {
		switch {
		case o.Size > r.maxSize:
			return "size " + strconv.FormatInt(o.Size, 10) + " bytes is over the limit of " + strconv.FormatInt(r.maxSize, 10)
		case o.Size < 0 && r.denyUnknownSize && o.IBB == "":
			return "size unknown"
		}
	}
	// In-band bytestream chunks carry no type: the SI or Jingle offer that
	// set up the stream was checked.
	if o.Mechanism == MechIBB {
		return ""
	}
	for _, t := range r.block {
		if t.match(o) {
			return "type " + describeType(o) + " is blocked"
		}
	}
	if len(r.allow) > 0 {
		for _, t := range r.allow {
			if t.match(o) {
				return ""
			}
		}
		return "type " + describeType(o) + " is not allowed"
	}
	return ""
}

func describeType(o *FileOffer) string {
	switch {
	case o.MediaType != "" && o.Name != "":
		return o.MediaType + " (" + o.Name + ")"
	case o.MediaType != "":
		return o.MediaType
	case o.Name != "":
		return o.Name
	}
	return "unknown"
}
