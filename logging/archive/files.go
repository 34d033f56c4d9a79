package archive

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"gatehouse/xmpp/stanza"
)

// Namespaces of the file offers the boundary records.
const (
	nsOOBX      = "jabber:x:oob"
	nsOOBIQ     = "jabber:iq:oob"
	nsSFS       = "urn:xmpp:sfs:0"
	nsFileMeta  = "urn:xmpp:file:metadata:0"
	nsURLData   = "http://jabber.org/protocol/url-data"
	nsHashes    = "urn:xmpp:hashes:2"
	nsJingle    = "urn:xmpp:jingle:1"
	nsJingleFT  = "urn:xmpp:jingle:apps:file-transfer:"
	nsSI        = "http://jabber.org/protocol/si"
	nsSIFile    = "http://jabber.org/protocol/si/profile/file-transfer"
	maxFileRows = 16 // offers recorded per stanza at most
)

// fileOffer is what a stanza says about a file it offers.
type fileOffer struct {
	name, mediaType, sha256, url string
	size                         int64
}

// fileOffers returns the files a stanza offers: XEP-0066 out-of-band URLs
// (message or iq), XEP-0447 stateless file sharing with XEP-0446
// metadata, XEP-0234 Jingle and XEP-0096 SI file offers, and a body that
// is only an aesgcm:// link (OMEMO media sharing). Inline data (bits of
// binary, in-band bytestream chunks, data: URIs) is left to the raw
// stanza.
func fileOffers(st *stanza.Stanza) []fileOffer {
	var out []fileOffer
	switch st.Kind {
	case stanza.KindMessage:
		oob := false
		for _, e := range st.Elements() {
			switch {
			case e.Name.Space == nsOOBX && e.Name.Local == "x":
				out = appendURL(out, e.ChildText("", "url"))
				oob = true
			case e.Name.Space == nsSFS && e.Name.Local == "file-sharing":
				o := fileOffer{size: -1}
				if f := e.Child(nsFileMeta, "file"); f != nil {
					o = fileMeta(f)
				}
				if src := e.Child("", "sources"); src != nil {
					for _, s := range src.Elements() {
						if s.Name.Space == nsURLData && s.Name.Local == "url-data" {
							o.url = s.AttrValue("target")
							break
						}
					}
				}
				if o.name == "" {
					o.name = urlName(o.url)
				}
				out = append(out, o)
			}
		}
		if b := strings.TrimSpace(st.Body()); !oob && strings.HasPrefix(strings.ToLower(b), "aesgcm://") && !strings.ContainsAny(b, " \t\n") {
			out = appendURL(out, b)
		}
	case stanza.KindIQ:
		p := st.Payload()
		if st.Type != "set" || p == nil {
			break
		}
		switch {
		case p.Name.Space == nsOOBIQ && p.Name.Local == "query":
			out = appendURL(out, p.ChildText("", "url"))
		case p.Name.Space == nsSI && p.Name.Local == "si":
			if f := p.Child(nsSIFile, "file"); f != nil {
				out = append(out, fileOffer{name: f.AttrValue("name"), mediaType: p.AttrValue("mime-type"), size: parseSize(f.AttrValue("size"))})
			}
		case p.Name.Space == nsJingle && p.Name.Local == "jingle":
			if a := p.AttrValue("action"); a != "session-initiate" && a != "content-add" {
				break
			}
			for _, c := range p.Elements() {
				for _, d := range c.Elements() {
					if d.Name.Local != "description" || !strings.HasPrefix(d.Name.Space, nsJingleFT) {
						continue
					}
					f := d.Child("", "file")
					if off := d.Child("", "offer"); f == nil && off != nil {
						f = off.Child("", "file") // file-transfer:3
					}
					if f != nil {
						out = append(out, fileMeta(f))
					}
				}
			}
		}
	}
	if len(out) > maxFileRows {
		out = out[:maxFileRows]
	}
	return out
}

// fileMeta reads a XEP-0446 (or XEP-0234) <file/>.
func fileMeta(f *stanza.Element) fileOffer {
	o := fileOffer{name: strings.TrimSpace(f.ChildText("", "name")), mediaType: strings.TrimSpace(f.ChildText("", "media-type")),
		size: parseSize(f.ChildText("", "size"))}
	for _, h := range f.Elements() {
		if h.Name.Local == "hash" && h.Name.Space == nsHashes && h.AttrValue("algo") == "sha-256" {
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h.Text())); err == nil && len(b) == 32 {
				o.sha256 = hex.EncodeToString(b)
			}
		}
	}
	return o
}

func appendURL(out []fileOffer, u string) []fileOffer {
	u = strings.TrimSpace(u)
	if u == "" || strings.HasPrefix(strings.ToLower(u), "data:") {
		return out
	}
	return append(out, fileOffer{url: u, name: urlName(u), size: -1})
}

func urlName(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return ""
	}
	if name := path.Base(pu.Path); name != "." && name != "/" {
		return name
	}
	return ""
}

func parseSize(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// appendWithFiles commits a stanza record and a file_transfers row for
// each file it offers in one transaction: the files name the stanza's
// seq, and either all of them are on record or none.
func (a *Archive) appendWithFiles(ctx context.Context, rec *Stanza, files []fileOffer, scan string) error {
	if err := rec.check(); err != nil {
		return err
	}
	err := a.do(ctx, func(ctx context.Context, ap *appender) error {
		rc, err := ap.append(ctx, rec)
		if err != nil {
			return err
		}
		for _, f := range files {
			ft := &FileTransfer{Direction: rec.Direction, Zone: rec.Zone, Network: rec.Network, Account: rec.Account,
				Peer: rec.Peer, PeerJID: rec.PeerJID, FileName: f.name, Size: f.size, MediaType: f.mediaType,
				SHA256: f.sha256, URL: f.url, ScanResult: scan, Verdict: rec.Verdict, Rule: rec.Rule, PolicyVersion: rec.PolicyVersion,
				StanzaSeq: rc.Seq}
			if _, err := ap.append(ctx, ft); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
