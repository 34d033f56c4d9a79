package report

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"gatehouse/logging/archive"
)

var day0 = time.Date(2026, 11, 16, 9, 0, 0, 0, time.UTC) // a Monday

// buildArchive writes a week of border traffic through the real archive
// writer and returns the database path.
func buildArchive(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "archive.db")
	now := day0
	a, err := archive.Open(context.Background(), archive.Options{Path: path, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := func(dayN int, dir archive.Direction, zone archive.Zone, network, account, peer string, verdict archive.Verdict) {
		now = day0.Add(time.Duration(dayN)*24*time.Hour + time.Minute)
		rec := &archive.Stanza{Direction: dir, Zone: zone, Network: network, Account: account, LocalJID: account + "/r",
			Peer: peer, PeerJID: peer, Kind: "message", Type: "chat", Body: "hi", Verdict: verdict,
			Raw: "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"}
		if _, err := a.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	// alice: 3 out, 2 in with two partners over federation; one denied.
	msg(0, archive.Out, archive.ZoneRemote, "partner.example", "alice@corp.example", "bob@partner.example", archive.Allow)
	msg(0, archive.In, archive.ZoneRemote, "partner.example", "alice@corp.example", "bob@partner.example", archive.Allow)
	msg(1, archive.Out, archive.ZoneRemote, "partner.example", "alice@corp.example", "carol@partner.example", archive.Allow)
	msg(1, archive.In, archive.ZoneRemote, "partner.example", "alice@corp.example", "carol@partner.example", archive.Allow)
	// dave: IRC through a transport.
	msg(2, archive.Out, archive.ZoneTransport, "irc.corp.example", "dave@corp.example", "nick%irc.libera.chat@irc.corp.example", archive.Allow)
	// Internal traffic is not border traffic. (The archive's clock never
	// goes back, so records are written in time order.)
	msg(2, archive.Internal, archive.ZoneLocal, "corp.example", "alice@corp.example", "dave@corp.example", archive.Allow)
	msg(3, archive.Out, archive.ZoneRemote, "partner.example", "alice@corp.example", "bob@partner.example", archive.Deny)

	now = day0.Add(3*24*time.Hour + time.Hour)
	if _, err := a.Append(ctx, &archive.FileTransfer{Direction: archive.Out, Zone: archive.ZoneRemote, Network: "partner.example",
		Account: "alice@corp.example", Peer: "bob@partner.example", PeerJID: "bob@partner.example/x", FileName: "plan.pdf",
		Size: 2048, Verdict: archive.Allow}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, &archive.PolicyAction{Action: "notify", Rule: "project-x", Account: "alice@corp.example",
		Peer: "bob@partner.example", Network: "partner.example"}); err != nil {
		t.Fatal(err)
	}
	// Outside the period: the next week.
	msg(8, archive.Out, archive.ZoneRemote, "partner.example", "alice@corp.example", "bob@partner.example", archive.Allow)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return path
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func weekReport(t *testing.T) *Report {
	t.Helper()
	db := openRO(t, buildArchive(t))
	from := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	r, err := Build(context.Background(), db, Options{From: from, To: from.Add(7 * 24 * time.Hour),
		Groups: map[string][]string{"sales": {"alice"}, "ops": {"dave"}, "empty": {"zed"}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBuild(t *testing.T) {
	r := weekReport(t)
	want := map[string]Row{
		"alice@corp.example": {MessagesIn: 2, MessagesOut: 3, ExternalContacts: 2, PolicyHits: 2, Files: 1, FileBytes: 2048},
		"dave@corp.example":  {MessagesOut: 1, ExternalContacts: 1},
	}
	if len(r.Users) != 2 || r.Users[0].Name != "alice@corp.example" {
		t.Fatalf("users = %+v", r.Users)
	}
	for _, u := range r.Users {
		w := want[u.Name]
		w.Name = u.Name
		if u != w {
			t.Errorf("user row %+v, want %+v", u, w)
		}
	}
	groups := map[string]Row{}
	for _, g := range r.Groups {
		groups[g.Name] = g
	}
	if g := groups["sales"]; g.Messages() != 5 || g.ExternalContacts != 2 || g.Files != 1 {
		t.Errorf("sales = %+v", g)
	}
	if g := groups["ops"]; g.MessagesOut != 1 || g.ExternalContacts != 1 {
		t.Errorf("ops = %+v", g)
	}
	if g, ok := groups["empty"]; !ok || g.Messages() != 0 {
		t.Errorf("empty group = %+v (present %v)", g, ok)
	}
	if len(r.Networks) != 2 || r.Networks[0].Name != "partner.example" || r.Networks[0].Messages() != 5 || r.Networks[1].Name != "irc.corp.example" {
		t.Errorf("networks = %+v", r.Networks)
	}
	if r.Totals.Messages() != 6 || r.Totals.ExternalContacts != 3 || r.Totals.Files != 1 {
		t.Errorf("totals = %+v", r.Totals)
	}
	if len(r.Days) != 7 || r.Days[0] != (Day{"2026-11-16", 1, 1}) || r.Days[2] != (Day{"2026-11-18", 0, 1}) || r.Days[6].In+r.Days[6].Out != 0 {
		t.Errorf("days = %+v", r.Days)
	}

	var tbl bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`alice@corp\.example\s+2\s+3\s+2\s+2\s+1\s+2048`).MatchString(tbl.String()) {
		t.Errorf("table:\n%s", tbl.String())
	}
	var c bytes.Buffer
	if err := r.WriteCSV(&c); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&c).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// header + 2 users + 3 groups + 2 networks + total + 7 days
	if len(recs) != 1+2+3+2+1+7 || recs[1][0] != "user" || recs[1][1] != "alice@corp.example" || recs[1][3] != "3" {
		t.Errorf("csv:\n%v", recs)
	}
	if _, err := Build(context.Background(), openRO(t, buildArchive(t)), Options{From: day0, To: day0}); err == nil {
		t.Error("an empty period was accepted")
	}
}

// The HTML page draws its charts in a real browser: Debian's chromium,
// headless, runs the page's script; the DOM after it ran has the bars and
// the screenshot has their colours.
func TestHTMLRendersInChromium(t *testing.T) {
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing; .ci/deps.sh installs it")
		}
		t.Skip("chromium not installed")
	}
	r := weekReport(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(page)
	if bytes.Contains(html, []byte("http://")) && !bytes.Contains(html, []byte(`"http://www.w3.org/2000/svg"`)) || bytes.Contains(html, []byte("src=")) {
		t.Error("the page refers to outside resources; it must be self-contained")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1000,900"}
	dom, err := exec.CommandContext(ctx, browser, append(args, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	d := string(dom)
	if !strings.Contains(d, `data-charts="3"`) {
		t.Fatalf("the page's script did not run to the end:\n%.2000s", d)
	}
	// 4 days with traffic: day 0 in+out, day 1 in+out, day 2 out, day 3 out.
	for id, bars := range map[string]string{"chart-days": "6", "chart-users": "2", "chart-networks": "2"} {
		if !regexp.MustCompile(`id="` + id + `"[^>]*data-bars="` + bars + `"`).MatchString(d) {
			t.Errorf("%s: want data-bars=%s in\n%.1500s", id, bars, d)
		}
	}
	if n := strings.Count(d, "<rect"); n != 10 {
		t.Errorf("%d bars drawn, want 10", n)
	}
	shot := filepath.Join(dir, "shot.png")
	if out, err := exec.CommandContext(ctx, browser, append(args, "--screenshot="+shot, "file://"+page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	sf, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	img, err := png.Decode(sf)
	if err != nil {
		t.Fatal(err)
	}
	// Count pixels of the "in" (#2b6cb0) and "out" (#dd6b20) bar colours.
	colours := map[[3]uint32]int{{0x2b, 0x6c, 0xb0}: 0, {0xdd, 0x6b, 0x20}: 0, {0x38, 0xa1, 0x69}: 0}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			k := [3]uint32{r >> 8, g >> 8, bl >> 8}
			if _, ok := colours[k]; ok {
				colours[k]++
			}
		}
	}
	for k, n := range colours {
		if n < 50 {
			t.Errorf("colour #%02x%02x%02x: %d pixels on the screenshot; the charts did not draw", k[0], k[1], k[2], n)
		}
	}
}
