package policy_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/policy"
	"gatehouse/policy/clamdtest"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// TestGateUploads: uploads to the built-in service meet the file rules at
// slot time and the virus scan (a real clamd) when complete; the link of
// a clean upload is then judged by the file's real size when it crosses.
func TestGateUploads(t *testing.T) {
	cd := clamdtest.Start(t)
	scanner := &policy.Clamd{Network: "unix", Addr: cd.Socket, Timeout: 10 * time.Second}
	p := example(t)
	f := newGate(t, p, func(o *policy.GateOptions) { o.Scanner = scanner })
	ctx := t.Context()
	alice := jid.MustParse("alice@localhost")
	up := func(name, typ string, size int64) policy.FileUpload {
		return policy.FileUpload{Owner: alice, Name: name, MediaType: typ, Size: size, URL: "https://localhost:5443/tok-" + name + "/" + name}
	}

	// Slot requests: no-executables has no direction, so it applies to
	// uploads; max-1mb is outbound only, so a large upload is fine.
	if d := f.gate.CheckUploadSlot(ctx, up("setup.exe", "application/octet-stream", 2000)); d.Verdict != router.Deny ||
		d.Rule != "no-executables" || d.Text != "Executable files are not allowed. (rule no-executables)" || d.PolicyVersion != p.Version() {
		t.Fatalf("executable slot: %+v", d)
	}
	big := up("video.mp4", "video/mp4", 5_000_000)
	if d := f.gate.CheckUploadSlot(ctx, big); d.Verdict != router.Allow || d.Rule != "default" {
		t.Fatalf("large slot: %+v", d)
	}

	// Complete files: EICAR is refused and alice's manager told; clean
	// files pass.
	eicar := up("eicar.com", "", int64(len(clamdtest.EICAR())))
	d := f.gate.CheckUploadedFile(ctx, eicar, bytes.NewReader(clamdtest.EICAR()))
	if d.Verdict != router.Deny || d.Rule != "virus-scan" || !strings.Contains(d.Text, clamdtest.EICARName) || d.Condition != stanza.PolicyViolation {
		t.Fatalf("EICAR upload: %+v", d)
	}
	notes := f.sink.take()
	if len(notes) != 2 || notes[0].To.String() != "boss@localhost" ||
		!strings.Contains(notes[0].Body(), "Rule virus-scan (scan, deny) acted on an upload by alice@localhost") ||
		!strings.Contains(notes[0].Body(), "Malware: "+clamdtest.EICARName) {
		t.Fatalf("notices: %v", notes)
	}
	if d := f.gate.CheckUploadedFile(ctx, big, bytes.NewReader(bytes.Repeat([]byte("frame "), 1000))); d.Verdict != router.Allow {
		t.Fatalf("clean upload: %+v", d)
	}
	small := up("notes.txt", "text/plain", 100)
	if d := f.gate.CheckUploadedFile(ctx, small, strings.NewReader("clean notes")); d.Verdict != router.Allow {
		t.Fatalf("clean small upload: %+v", d)
	}

	// The links cross: the 5 MB file is over max-1mb, the small one is
	// not, a link the Gate has not seen is of unknown size (allowed here).
	link := func(u string) string {
		return `<message from='alice@localhost/d' to='partner@irc.localhost' type='chat'><body>` + u +
			`</body><x xmlns='jabber:x:oob'><url>` + u + `</url></x></message>`
	}
	if d, _ := f.cross(t, link(big.URL)); d.Verdict != router.Deny || !strings.HasSuffix(d.Rule, "max-1mb") {
		t.Fatalf("link to the large upload: %+v", d)
	}
	if d, _ := f.cross(t, link(small.URL)); d.Verdict != router.Allow {
		t.Fatalf("link to the small upload: %+v", d)
	}
	if d, _ := f.cross(t, link("https://localhost:5443/unknown/film.mp4")); d.Verdict != router.Allow {
		t.Fatalf("link to an unknown upload: %+v", d)
	}
}

// TestGateUploadScanFailure: clamd down refuses a complete upload unless
// on_scan_failure is allow.
func TestGateUploadScanFailure(t *testing.T) {
	down := &policy.Clamd{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), Timeout: time.Second}
	p := example(t)
	u := policy.FileUpload{Owner: jid.MustParse("alice@localhost"), Name: "a.txt", Size: 1, URL: "https://h/t/a.txt"}
	for _, open := range []bool{false, true} {
		f := newGate(t, p, func(o *policy.GateOptions) { o.Scanner, o.ScanFailOpen = down, open })
		d := f.gate.CheckUploadedFile(t.Context(), u, strings.NewReader("x"))
		switch {
		case open && d.Verdict != router.Allow:
			t.Fatalf("fail open: %+v", d)
		case !open && (d.Verdict != router.Deny || d.Condition != stanza.ResourceConstraint || d.Rule != "virus-scan"):
			t.Fatalf("fail closed: %+v", d)
		}
	}
}

// TestUploadDirection: direction upload is only for file rules and scan.
func TestUploadDirection(t *testing.T) {
	if _, err := policy.Parse([]byte("version: v1\nfiles:\n  - {id: up, direction: upload, max_size: 10, action: deny}\n"), "x.yaml", opts); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Parse([]byte("version: v1\naccess:\n  - {id: a, direction: upload, action: deny}\n"), "x.yaml", opts)
	if err == nil || !strings.Contains(err.Error(), "access[0].direction (rule a): upload is only for file rules and scan") {
		t.Fatalf("access rule with direction upload: %v", err)
	}
}
