package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Progress reports rows done out of total during long runs.
type Progress func(done, total int64)

// ExportJSONL writes every stanza row matching f to w as JSON Lines (one
// object per row, keys are the column names), in seq order. The export is
// recorded first ("archive.export"); dest names the destination in that
// record.
func (a *Archive) ExportJSONL(ctx context.Context, f Filter, by Actor, dest string, w io.Writer, progress Progress) (int64, error) {
	total, err := a.Count(ctx, f)
	if err != nil {
		return 0, err
	}
	if err := a.audit(ctx, by, "archive.export", dest, map[string]any{"format": "jsonl", "filter": f, "rows": total}); err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var done int64
	n, err := a.scan(ctx, f, "seq", func(r *StanzaRow) error {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("archive: export: %w", err)
		}
		done++
		if progress != nil {
			progress(done, total)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("archive: export: %w", err)
	}
	return n, nil
}

// MailFormat is the layout of a mail export.
type MailFormat string

// Mail export layouts.
const (
	// MBox writes one mbox file (mboxrd) per conversation:
	// DIR/<account>__<peer>.mbox.
	MBox MailFormat = "mbox"
	// EML writes one RFC 5322 file per message, a directory per
	// conversation: DIR/<account>__<peer>/<seq>.eml.
	EML MailFormat = "eml"
)

// ExportMail writes the matching messages as e-mail for e-discovery tools,
// grouped per conversation (account and peer), oldest first. Each message
// carries X-Gatehouse-* headers with its seq, direction, network, verdict
// and rule. The export is recorded first ("archive.export").
func (a *Archive) ExportMail(ctx context.Context, f Filter, by Actor, format MailFormat, dir string, progress Progress) (int64, error) {
	if format != MBox && format != EML {
		return 0, fmt.Errorf("%w: mail format %q (want mbox or eml)", ErrInvalid, format)
	}
	total, err := a.Count(ctx, f)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("archive: export: %w", err)
	}
	if err := a.audit(ctx, by, "archive.export", dir, map[string]any{"format": string(format), "filter": f, "rows": total}); err != nil {
		return 0, err
	}
	var cur string
	var out *os.File
	var bw *bufio.Writer
	closeOut := func() error {
		if out == nil {
			return nil
		}
		err := bw.Flush()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		out = nil
		return err
	}
	var done int64
	n, err := a.scan(ctx, f, "account, peer, seq", func(r *StanzaRow) error {
		conv := fileName(r.Account) + "__" + fileName(r.Peer)
		msg := mailMessage(r, a.id)
		switch format {
		case MBox:
			if conv != cur {
				if err := closeOut(); err != nil {
					return err
				}
				f, err := os.OpenFile(filepath.Join(dir, conv+".mbox"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("archive: export: %w", err)
				}
				out, bw, cur = f, bufio.NewWriter(f), conv
			}
			writeMbox(bw, r, msg)
		case EML:
			sub := filepath.Join(dir, conv)
			if conv != cur {
				if err := os.MkdirAll(sub, 0o700); err != nil {
					return fmt.Errorf("archive: export: %w", err)
				}
				cur = conv
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("%012d.eml", r.Seq)), msg, 0o600); err != nil {
				return fmt.Errorf("archive: export: %w", err)
			}
		}
		done++
		if progress != nil {
			progress(done, total)
		}
		return nil
	})
	if cerr := closeOut(); err == nil && cerr != nil {
		err = fmt.Errorf("archive: export: %w", cerr)
	}
	return n, err
}

// fileName makes a JID safe as a file name on every common file system.
func fileName(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '@', r == '.', r == '-', r == '+':
			return r
		}
		return '_'
	}, s)
}

// mailMessage renders a stanza row as an RFC 5322 message with a
// quoted-printable UTF-8 text body.
func mailMessage(r *StanzaRow, archiveID string) []byte {
	from, to := r.Account, r.Peer
	if r.Direction == In {
		from, to = r.Peer, r.Account
	}
	subject := r.Subject
	if subject == "" {
		subject = fmt.Sprintf("XMPP %s message with %s", r.Type, r.Peer)
		if r.Direction == In {
			subject = fmt.Sprintf("XMPP %s message with %s", r.Type, r.Account)
		}
	}
	var b bytes.Buffer
	hdr := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	hdr("From", (&mail.Address{Address: from}).String())
	hdr("To", (&mail.Address{Address: to}).String())
	hdr("Date", r.Time().Format(time.RFC1123Z))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Message-ID", fmt.Sprintf("<%d.%s@archive.gatehouse.invalid>", r.Seq, archiveID))
	hdr("X-Gatehouse-Seq", itoa(r.Seq))
	hdr("X-Gatehouse-Direction", string(r.Direction))
	hdr("X-Gatehouse-Zone", string(r.Zone))
	hdr("X-Gatehouse-Network", r.Network)
	hdr("X-Gatehouse-Local-JID", r.LocalJID)
	hdr("X-Gatehouse-Peer-JID", r.PeerJID)
	hdr("X-Gatehouse-Legacy-ID", mime.QEncoding.Encode("utf-8", r.LegacyID))
	hdr("X-Gatehouse-Stanza-Type", r.Type)
	hdr("X-Gatehouse-Thread", mime.QEncoding.Encode("utf-8", r.Thread))
	hdr("X-Gatehouse-Verdict", string(r.Verdict))
	hdr("X-Gatehouse-Rule", r.Rule)
	hdr("X-Gatehouse-Policy-Version", r.PolicyVersion)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(r.Body))
	_ = qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

// writeMbox appends msg in mboxrd form: a "From " separator line, then the
// message with LF line ends and every line matching ^>*From  quoted with
// one more '>'.
func writeMbox(w *bufio.Writer, r *StanzaRow, msg []byte) {
	sender := r.Account
	if r.Direction == In {
		sender = r.Peer
	}
	if sender == "" || strings.ContainsAny(sender, " \t") {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "From %s %s\n", sender, r.Time().Format("Mon Jan _2 15:04:05 2006"))
	for _, line := range strings.Split(strings.TrimRight(strings.ReplaceAll(string(msg), "\r\n", "\n"), "\n"), "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
			w.WriteByte('>')
		}
		w.WriteString(line)
		w.WriteByte('\n')
	}
	w.WriteByte('\n')
}
