package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// binary is a `gatehouse serve` process built from this tree and started
// the way `just run` starts it: the embedded defaults (MAM, PEP, group
// chat and file upload on, a self-signed certificate generated into the
// data directory), with only the listeners moved to free loopback ports.
type binary struct {
	cmd     *exec.Cmd
	dir     string
	cfg     string
	c2s     string // STARTTLS listener
	upload  string // upload HTTPS listener
	cert    *x509.Certificate
	exited  chan struct{}
	mu      sync.Mutex
	stderr  strings.Builder
	started chan struct{}
}

// buildGatehouse compiles ./cmd/gatehouse into dir, unless
// GATEHOUSE_BIN names a binary to run instead (one `just build` made).
func buildGatehouse(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("GATEHOUSE_BIN"); bin != "" {
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "gatehouse")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "gatehouse/cmd/gatehouse")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gatehouse: %v\n%s", err, out)
	}
	return bin
}

// startBinary writes the config, creates the accounts with
// `gatehouse user add` and starts `gatehouse serve`, waiting for its
// "listening" log lines. It is stopped with SIGTERM (by PID) at cleanup.
func startBinary(t *testing.T, accounts map[string]string) *binary {
	t.Helper()
	dir := t.TempDir()
	bin := buildGatehouse(t, dir)
	b := &binary{dir: dir, cfg: filepath.Join(dir, "gatehouse.yaml"), exited: make(chan struct{}), started: make(chan struct{})}
	doc := fmt.Sprintf("data_dir: %s\nlog: {level: info, format: json}\nc2s: {listen: ['127.0.0.1:0'], listen_tls: []}\nupload: {listen: '127.0.0.1:0'}\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(b.cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for user, pw := range accounts {
		pwFile := filepath.Join(dir, user+".pw")
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", b.cfg, "user", "add", user, "--password-file", pwFile).CombinedOutput(); err != nil {
			t.Fatalf("gatehouse user add %s: %v\n%s", user, err, out)
		}
	}
	b.cmd = exec.Command(bin, "-c", b.cfg, "serve")
	b.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	pipe, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("gatehouse serve: pid %d", b.cmd.Process.Pid)
	t.Cleanup(func() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(20 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.exited
			t.Errorf("gatehouse did not stop on SIGTERM")
		}
		if t.Failed() {
			b.mu.Lock()
			t.Logf("gatehouse log:\n%s", tail(b.stderr.String(), 60))
			b.mu.Unlock()
		}
	})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var ev struct {
				Msg, Addr string
				DirectTLS bool `json:"direct_tls"`
			}
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				switch {
				case ev.Msg == "c2s listening" && !ev.DirectTLS:
					b.c2s = ev.Addr
				case ev.Msg == "upload HTTPS listening":
					b.upload = ev.Addr
				}
			}
			up := b.c2s != "" && b.upload != ""
			b.mu.Unlock()
			if up {
				once.Do(func() { close(b.started) })
			}
		}
		_ = b.cmd.Wait()
		close(b.exited)
	}()
	select {
	case <-b.started:
	case <-b.exited:
		t.Fatalf("gatehouse exited:\n%s", b.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("gatehouse did not report its listeners")
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "data", "tls", "cert.pem"))
	if err != nil {
		t.Fatalf("the generated certificate: %v", err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("data/tls/cert.pem holds no PEM block")
	}
	if b.cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	return b
}

// env gives the interop helpers (profanity login, raw clients) the
// running binary.
func (b *binary) env(t *testing.T) *env {
	roots := x509.NewCertPool()
	roots.AddCert(b.cert)
	e := &env{ts: &xmpptest.TestServer{Addr: b.c2s, Roots: roots, Domain: "localhost"}, dir: t.TempDir()}
	e.ca = filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(e.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.certSHA1 = sha1Hex(b.cert.Raw)
	var err error
	if e.host, e.port, err = net.SplitHostPort(b.c2s); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestProfanitySession is the closest this test suite gets to "a session
// with Gajim or Dino against `just run`": the real `gatehouse` binary with
// its default configuration, and profanity (Debian 0.13) typed into in a
// tmux pane. It checks what a user sees:
//   - history: messages alice's phone got earlier are fetched from the
//     message archive (XEP-0313) when profanity opens the chat with bob;
//   - file sharing: /sendfile uploads through upload.localhost
//     (XEP-0363) and bob gets a URL that serves the file's bytes;
//   - avatars: /avatar get downloads bob's XEP-0084 avatar byte for byte
//     (which needs the server to learn profanity's new caps), and
//     /avatar set shows up as alice's vCard photo (XEP-0398);
//   - group chat: /join creates a room at conference.localhost, bob
//     joins, and each sees the other's message.
func TestProfanitySession(t *testing.T) {
	interopTest(t)
	requireCmd(t, "tmux")
	requireCmd(t, "profanity")
	b := startBinary(t, users)
	e := b.env(t)

	// History: alice's phone (a raw client) gets three messages live,
	// so none waits in offline storage; only the archive has them.
	phone := e.ts.Dial(t, "alice", users["alice"], xmpptest.ClientOptions{Resource: "phone"})
	phone.Send(`<presence/>`)
	phone.Ping()
	bob := e.ts.Dial(t, "bob", users["bob"], xmpptest.ClientOptions{Resource: "pc"})
	bob.Send(`<presence/>`)
	bob.Ping()
	// alice and bob are contacts both ways (presence, PEP notifications).
	for _, c := range []*xmpptest.Client{phone, bob} {
		c.Send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>`)
		c.Expect(xmpptest.IsIQ("roster"))
	}
	phone.Sendf(`<presence to='%s' type='subscribe'/>`, e.bare("bob"))
	bob.Expect(xmpptest.IsPresence("subscribe", e.bare("alice")))
	bob.Sendf(`<presence to='%s' type='subscribed'/>`, e.bare("alice"))
	bob.Sendf(`<presence to='%s' type='subscribe'/>`, e.bare("alice"))
	phone.Expect(xmpptest.IsPresence("subscribe", e.bare("bob")))
	phone.Sendf(`<presence to='%s' type='subscribed'/>`, e.bare("bob"))
	bob.Expect(xmpptest.IsPresence("subscribed", e.bare("alice")))
	var history []string
	for i := 1; i <= 3; i++ {
		h := fmt.Sprintf("archived line %d from bob", i)
		history = append(history, h)
		bob.Sendf(`<message to='%s' type='chat' id='h%d'><body>%s</body></message>`, e.bare("alice"), i, h)
		phone.Expect(xmpptest.IsMessage(h))
	}
	phone.Close()

	p := startProfanity(t)
	p.typeLine("/mam on")
	alice := p.loginTrusting(e, "alice")
	t.Logf("profanity logged in as %s", alice)
	// profanity decides whether it can fetch history when the chat window
	// opens, from the server features its connect-time disco#info
	// brought. The server answers a stream's iqs in order, so once the
	// answer to this later /disco shows, the earlier one has arrived.
	p.typeLine("/disco info localhost")
	p.waitScreen("the server's disco#info", regexp.MustCompile(`(?i)service discovery info for localhost`))
	p.typeLine("/msg " + e.bare("bob"))
	// profanity 0.13 fetches history only if the server's own disco#info
	// lists urn:xmpp:mam:2 (ejabberd mirrors it there; XEP-0313 puts it on
	// the account, where Gatehouse has it): an Errorf, so the rest of the
	// session still runs.
	for _, h := range history {
		if _, err := p.tryWaitScreen(regexp.MustCompile(regexp.QuoteMeta(h)), stepTimeout); err != nil {
			t.Errorf("profanity does not show the archived message %q: %v", h, err)
			break
		}
	}

	// File sharing.
	file := filepath.Join(p.home, "notes.txt")
	data := []byte(strings.Repeat("meeting notes shared with profanity /sendfile\n", 50))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p.typeLine("/sendfile " + file)
	m := bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && strings.HasPrefix(s.Body(), "https://localhost:")
	})
	url := m.Body()
	t.Logf("profanity shared %s", url)
	hc := &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ts.Roots}}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET %s: %s, %d bytes (want %d)", url, res.Status, len(got), len(data))
	}

	// Avatars. bob publishes one (XEP-0084, open access as Conversations
	// does) and profanity downloads it with /avatar get; alice sets hers
	// with /avatar set, and the server turns it into her vCard photo
	// (XEP-0398), which is what vCard-based clients show.
	bobPNG := pngBytes(t, 8, color.RGBA{R: 200, A: 255})
	publishAvatar(t, e, bob, bobPNG)
	p.typeLine("/avatar get " + e.bare("bob"))
	// profanity says "Avatar saved as PATH" in its console window and
	// writes the file under its data directory.
	avatars := filepath.Join(p.home, ".local", "share", "profanity", "avatars")
	var saved []byte
	for deadline := time.Now().Add(stepTimeout); saved == nil; {
		_ = filepath.WalkDir(avatars, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(path, "bob") {
				saved, _ = os.ReadFile(path)
			}
			return nil
		})
		if saved == nil && time.Now().After(deadline) {
			// An Errorf, so group chat below is still checked.
			t.Errorf("profanity saved no avatar of bob under %s (the server never sent it bob's avatar metadata)", avatars)
			break
		}
		time.Sleep(pollEvery)
	}
	if saved != nil && !bytes.Equal(saved, bobPNG) {
		t.Errorf("profanity saved %d bytes as bob's avatar, bob published %d", len(saved), len(bobPNG))
	}
	avatarFile := filepath.Join(p.home, "alice.png")
	if err := os.WriteFile(avatarFile, pngBytes(t, 64, color.RGBA{B: 200, A: 255}), 0o644); err != nil {
		t.Fatal(err)
	}
	p.typeLine("/avatar set " + avatarFile)
	waitVCardPhoto(t, e, bob, e.bare("alice"))

	// Group chat.
	room := "team@conference.localhost"
	p.typeLine("/join " + room + " nick alice")
	p.waitScreen("the new room", regexp.MustCompile(`You have joined the room as alice, role: moderator, affiliation: owner[\s\S]*Room locked, requires configuration`))
	// A new room is locked until its owner configures it (XEP-0045
	// §10.1.2); profanity offers the defaults (an instant room).
	p.typeLine("/room accept")
	p.waitScreen("the unlocked room", regexp.MustCompile(`(?i)room unlocked`))
	bob.Sendf(`<presence to='%s/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	bob.Expect(func(s *stanza.Stanza) bool {
		x := s.Child("http://jabber.org/protocol/muc#user", "x")
		return s.Kind == stanza.KindPresence && s.From.String() == room+"/bob" && x != nil && strings.Contains(x.String(), `code="110"`)
	})
	// The occupant list (the pane's right column) shows bob as a participant.
	p.waitScreen("bob in the occupant list", regexp.MustCompile(`Participants\s*\n[^\n]*\sbob\s*\n`))
	p.typeLine("hello room, alice on profanity")
	bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Type == "groupchat" && s.From.String() == room+"/alice" && s.Body() == "hello room, alice on profanity"
	})
	bob.Sendf(`<message to='%s' type='groupchat'><body>hi alice, bob in the room</body></message>`, room)
	p.waitScreen("bob's room message", regexp.MustCompile(`bob: hi alice, bob in the room`))
}

// loginTrusting is login with "/tls always": profanity keeps the
// certificate in its own CA file, which it also gives libcurl for
// /sendfile.
func (p *profanity) loginTrusting(e *env, user string) string {
	p.t.Helper()
	p.typeLine(fmt.Sprintf("/connect %s server %s port %s tls force", e.bare(user), e.host, e.port))
	p.waitScreen("the password prompt", regexp.MustCompile(`(?i)enter password`))
	p.typeLine(users[user])
	m := p.waitScreen("the certificate prompt", regexp.MustCompile(`Fingerprint\s*:\s*([0-9a-fA-F]+)[\s\S]*Use '/tls allow'`))
	if !strings.EqualFold(m[1], e.certSHA1) {
		p.t.Fatalf("profanity shows certificate fingerprint %s, the server's is %s", m[1], e.certSHA1)
	}
	p.typeLine("/tls always")
	m = p.waitScreen("the login", regexp.MustCompile(`(\S+@\S+/\S+) logged in successfully`))
	return m[1]
}

func pngBytes(t *testing.T, size int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// publishAvatar publishes data and metadata (XEP-0084) as c, open to all.
func publishAvatar(t *testing.T, e *env, c *xmpptest.Client, data []byte) {
	t.Helper()
	sum := sha1.Sum(data)
	id := hex.EncodeToString(sum[:])
	open := `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>`
	for i, item := range []string{
		fmt.Sprintf(`<publish node='urn:xmpp:avatar:data'><item id='%s'><data xmlns='urn:xmpp:avatar:data'>%s</data></item></publish>`, id, base64.StdEncoding.EncodeToString(data)),
		fmt.Sprintf(`<publish node='urn:xmpp:avatar:metadata'><item id='%s'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='%d' id='%s' type='image/png' width='8' height='8'/></metadata></item></publish>`, id, len(data), id),
	} {
		iqID := fmt.Sprintf("avatar-%d", i)
		c.Sendf(`<iq type='set' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'>%s%s</pubsub></iq>`, iqID, item, open)
		if r := c.Expect(xmpptest.IsIQ(iqID)); r.Type != "result" {
			t.Fatalf("avatar publish: %s", r)
		}
	}
}

// waitVCardPhoto polls user's vCard as c until it has a PHOTO holding a
// PNG image.
func waitVCardPhoto(t *testing.T, e *env, c *xmpptest.Client, user string) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for i := 0; ; i++ {
		id := fmt.Sprintf("vc-%d", i)
		c.Sendf(`<iq type='get' id='%s' to='%s'><vCard xmlns='vcard-temp'/></iq>`, id, user)
		r := c.Expect(xmpptest.IsIQ(id))
		if photo := find(r.Element(), "vcard-temp", "BINVAL"); photo != nil {
			b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(photo.Text()), ""))
			if _, perr := png.Decode(bytes.NewReader(b)); err != nil || perr != nil {
				t.Fatalf("vCard PHOTO of %s is not a PNG: %v %v", user, err, perr)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's avatar never reached the vCard: %s", user, r)
		}
		time.Sleep(pollEvery)
	}
}
