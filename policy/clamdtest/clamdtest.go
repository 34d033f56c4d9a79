// Package clamdtest starts a real ClamAV daemon (Debian's clamav-daemon)
// for tests, with a signature database the test writes itself: no
// signature download is possible (or wanted) in CI. The database holds
//
//   - Gatehouse.Test.EICAR: the MD5 hash signature (.hdb) of the 68-byte
//     EICAR anti-virus test file, and
//   - Gatehouse.Test.Marker: a body signature (.ndb) of Marker, which can
//     be split across in-band bytestream chunks.
//
// Without clamd the test is skipped, or fails when CI=true. Only tests
// import this package.
package clamdtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/policy"
)

// EICAR returns the EICAR anti-virus test file. It is assembled at run
// time so that this source file does not itself look like the test file
// to a scanner.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*")
}

// Marker is content the body signature Gatehouse.Test.Marker matches.
const Marker = "GATEHOUSE-TEST-MALWARE-MARKER-7f3a9c1e5b"

// Signature names as clamd reports them.
const (
	EICARName  = "Gatehouse.Test.EICAR.UNOFFICIAL"
	MarkerName = "Gatehouse.Test.Marker.UNOFFICIAL"
)

// Daemon is a running clamd.
type Daemon struct {
	Socket string // unix socket path
	Addr   string // "unix:" + Socket, for policy.clamd
	Log    string // clamd's log file
}

// Binary returns the clamd executable, or "" when it is not installed.
func Binary() string {
	if p, err := exec.LookPath("clamd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/clamd", "/usr/local/sbin/clamd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start starts clamd on a unix socket in a fresh temporary directory and
// waits until it answers PING. It stops when the test ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("clamdtest: clamd is not installed (Debian package clamav-daemon; see .ci/deps.sh)")
		}
		t.Skip("clamdtest: clamd is not installed (apt-get install clamav-daemon)")
	}
	// A short directory: unix socket paths are limited to 108 bytes and
	// t.TempDir() paths carry the test name.
	dir, err := os.MkdirTemp("", "ghclamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(EICAR())
	hdb := fmt.Sprintf("%s:%d:Gatehouse.Test.EICAR\n", hex.EncodeToString(sum[:]), len(EICAR()))
	ndb := fmt.Sprintf("Gatehouse.Test.Marker:0:*:%s\n", hex.EncodeToString([]byte(Marker)))
	for name, body := range map[string]string{"test.hdb": hdb, "test.ndb": ndb} {
		if err := os.WriteFile(filepath.Join(db, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &Daemon{Socket: filepath.Join(dir, "clamd.sock"), Log: filepath.Join(dir, "clamd.log")}
	d.Addr = "unix:" + d.Socket
	conf := filepath.Join(dir, "clamd.conf")
	lines := []string{
		"LocalSocket " + d.Socket,
		"DatabaseDirectory " + db,
		"TemporaryDirectory " + dir,
		"LogFile " + d.Log,
		"Foreground yes",
		"StreamMaxLength 32M",
		"SelfCheck 0",
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("clamdtest: start clamd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	c := &policy.Clamd{Network: "unix", Addr: d.Socket, Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ping(context.Background())
		if err == nil {
			return d
		}
		select {
		case werr := <-exited:
			exited <- werr
			log, _ := os.ReadFile(d.Log)
			t.Fatalf("clamdtest: clamd exited (%v) before answering; log:\n%s", werr, log)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(d.Log)
			t.Fatalf("clamdtest: clamd did not answer within 60s (%v); log:\n%s", errors.Unwrap(err), log)
		}
	}
}
