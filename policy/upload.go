package policy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// MechUpload names a file stored on the built-in upload service, as the
// upload checks see it.
const MechUpload = "upload"

// FileUpload is a file a local account stores on the server's own upload
// service (XEP-0363). It is not a crossing: the file stays inside until
// its link is sent outside. The Gate applies the file rules to the slot
// request, scans the complete file, and remembers its size and type, so
// that the link, when it crosses, is judged by the file behind it.
type FileUpload struct {
	Owner     jid.JID // the uploading account
	Name      string
	MediaType string // as the client declared it; may be empty
	Size      int64
	URL       string // the GET URL handed out
}

// ReaderScanner is a Scanner that streams content (Clamd is one); the
// Gate uses it for uploads, which may be larger than memory should hold.
type ReaderScanner interface {
	ScanReader(ctx context.Context, r io.Reader) (string, error)
}

// uploadIndex remembers the size and type of files on the built-in upload
// service by URL, bounded, oldest forgotten first. It lives in the Gate,
// so reloads keep it; a restart forgets it (links to older uploads then
// count as of unknown size, like outside links).
type uploadIndex struct {
	mu    sync.RWMutex
	max   int
	files map[string]uploadInfo
	order []string // ring of URLs in insertion order
	next  int
}

type uploadInfo struct {
	size      int64
	mediaType string
	scanned   bool // found clean by the scanner when it was uploaded
}

func newUploadIndex(max int) *uploadIndex {
	return &uploadIndex{max: max, files: map[string]uploadInfo{}}
}

func (ix *uploadIndex) remember(u FileUpload, scanned bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.files[u.URL]; !ok {
		if len(ix.order) < ix.max {
			ix.order = append(ix.order, u.URL)
		} else {
			delete(ix.files, ix.order[ix.next])
			ix.order[ix.next] = u.URL
			ix.next = (ix.next + 1) % ix.max
		}
	}
	ix.files[u.URL] = uploadInfo{size: u.Size, mediaType: mediaType(u.MediaType), scanned: scanned}
}

// fill completes link offers that point at known uploads.
func (ix *uploadIndex) fill(offers []FileOffer) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(ix.files) == 0 {
		return
	}
	for i := range offers {
		o := &offers[i]
		if o.URL == "" || o.Size >= 0 {
			continue
		}
		if f, ok := ix.files[o.URL]; ok {
			o.Size = f.size
			if o.MediaType == "" {
				o.MediaType = f.mediaType
			}
			o.ScannedAtUpload = f.scanned
		}
	}
}

// uploadCrossing prepares sc for evaluating an upload by owner.
func (g *Gate) uploadCrossing(ctx context.Context, s *state, sc *scratch, u FileUpload) *crossing {
	x := &sc.x
	x.now, x.dir, x.zone, x.kinds = g.opts.Now(), Upload, router.ZoneLocal, kindFile
	if g.account(u.Owner) {
		x.local = u.Owner.Bare()
		sc.groups = g.members(ctx, s, x.now).users[u.Owner.Localpart()]
	}
	x.groups = &sc.groups
	sc.offers = append(sc.offers, FileOffer{Mechanism: MechUpload, Name: u.Name, MediaType: mediaType(u.MediaType), Size: u.Size, URL: u.URL})
	return x
}

// CheckUploadSlot applies the file rules to an upload slot request, before
// any byte is sent: rules with direction upload, or with no direction,
// whose other selectors match the uploader. A deny decision names the
// rule; its Text is meant for the uploader.
func (g *Gate) CheckUploadSlot(ctx context.Context, u FileUpload) router.Decision {
	s := g.cur.Load()
	p := s.p
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := g.uploadCrossing(ctx, s, sc, u)
	o := &sc.out
	o.verdict = router.Allow
	p.evaluateFiles(nil, x, sc)
	dec := p.decide(o, Upload)
	dec.Rule = ruleList(o.acted, false)
	for _, r := range o.acted {
		if r.notifies() {
			g.notify(ctx, p, r, x, nil, sc, "", "")
		}
	}
	return dec
}

// CheckUploadedFile scans a complete upload (content read from r) when the
// policy scans uploads, before the file can be fetched. Malware is a deny
// with notices, as for files that cross; a file that cannot be scanned is
// refused unless on_scan_failure is allow. A file that passes is
// remembered, so that its link is judged by its size and type when it
// crosses.
func (g *Gate) CheckUploadedFile(ctx context.Context, u FileUpload, r io.Reader) router.Decision {
	s := g.cur.Load()
	p := s.p
	sc := g.pool.Get().(*scratch)
	defer g.pool.Put(sc)
	sc.reset()
	x := g.uploadCrossing(ctx, s, sc, u)
	o := &sc.out
	dec := router.Decision{Verdict: router.Allow, Rule: DefaultRule, PolicyVersion: p.version}
	scanned := false
	if p.scan != nil && g.opts.Scanner != nil && p.scan.sel.match(x) {
		virus, err := g.scanStream(ctx, r)
		scanned = err == nil && virus == ""
		switch {
		case err != nil && !g.opts.ScanFailOpen:
			g.opts.Log.WithError(err).WithField("owner", u.Owner.String()).Warn("policy: upload could not be scanned; refusing it (on_scan_failure: deny)")
			return router.Decision{Verdict: router.Deny, Condition: stanza.ResourceConstraint, Rule: p.scan.id, PolicyVersion: p.version,
				Text: fmt.Sprintf("the file could not be checked for malware; try again later (rule %s)", p.scan.id)}
		case err != nil:
			g.opts.Log.WithError(err).WithField("owner", u.Owner.String()).Warn("policy: upload could not be scanned; keeping it (on_scan_failure: allow)")
		case virus != "":
			o.acted = append(o.acted, p.scan)
			o.verdict, o.deny = router.Deny, p.scan
			dec = p.decide(o, Upload)
			dec.Text = fmt.Sprintf("%s: %s (rule %s)", strings.TrimSuffix(p.scan.text, " (rule "+p.scan.id+")"), virus, p.scan.id)
			dec.Rule = p.scan.id
			if p.scan.notifies() {
				g.notify(ctx, p, p.scan, x, nil, sc, virus, "")
			}
			return dec
		}
	}
	g.uploads.remember(u, scanned)
	return dec
}

func (g *Gate) scanStream(ctx context.Context, r io.Reader) (string, error) {
	if rs, ok := g.opts.Scanner.(ReaderScanner); ok {
		return rs.ScanReader(ctx, r)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("%w: reading the upload: %w", ErrScan, err)
	}
	return g.opts.Scanner.Scan(ctx, data)
}
