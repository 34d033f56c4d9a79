package applog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want logrus.Level
		err  bool
	}{
		{"", logrus.InfoLevel, false},
		{"debug", logrus.DebugLevel, false},
		{"info", logrus.InfoLevel, false},
		{"warn", logrus.WarnLevel, false},
		{"error", logrus.ErrorLevel, false},
		{"warning", 0, true},
		{"INFO", 0, true},
		{"trace", 0, true},
		{"fatal", 0, true},
		{" info", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseLevel(tc.in)
		if tc.err {
			if !errors.Is(err, ErrLevel) {
				t.Errorf("%q: got %v, %v; want ErrLevel", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestNewFormatter(t *testing.T) {
	tests := []struct {
		in   string
		json bool
		err  bool
	}{
		{"", false, false},
		{"text", false, false},
		{"json", true, false},
		{"JSON", false, true},
		{"logfmt", false, true},
	}
	for _, tc := range tests {
		f, err := NewFormatter(tc.in)
		if tc.err {
			if !errors.Is(err, ErrFormat) || f != nil {
				t.Errorf("%q: got %v, %v; want ErrFormat", tc.in, f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		_, isJSON := f.(utc).f.(*logrus.JSONFormatter)
		if isJSON != tc.json {
			t.Errorf("%q: JSON formatter = %v", tc.in, isJSON)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		level, format, file string
		want                error
	}{
		{"loud", "text", "", ErrLevel},
		{"info", "xml", "", ErrFormat},
		{"info", "text", filepath.Join(dir, "no", "such", "dir", "log"), ErrFile},
		{"info", "text", dir, ErrFile}, // a directory
	}
	for _, tc := range tests {
		l, c, err := New(tc.level, tc.format, tc.file)
		if !errors.Is(err, tc.want) || l != nil || c != nil {
			t.Errorf("New(%q, %q, %q) = %v, %v, %v; want %v", tc.level, tc.format, tc.file, l, c, err, tc.want)
		}
	}
	if _, _, err := New("info", "text", filepath.Join(dir, "no", "log")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v does not wrap fs.ErrNotExist", err)
	}
}

func TestStderr(t *testing.T) {
	l, c, err := New("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Out != os.Stderr || l.GetLevel() != logrus.InfoLevel {
		t.Fatalf("Out %v level %v", l.Out, l.GetLevel())
	}
	if l == logrus.StandardLogger() {
		t.Fatal("New returned the standard logger")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStandardLoggerUntouched(t *testing.T) {
	std := logrus.StandardLogger()
	lvl, fmtr, out := std.GetLevel(), std.Formatter, std.Out
	l, c, err := New("debug", "json", filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if l == std || std.GetLevel() != lvl || std.Formatter != fmtr || std.Out != out {
		t.Fatal("New changed the logrus standard logger")
	}
}

// readLines returns the lines of a log file.
func readLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestJSONOutput(t *testing.T) {
	name := filepath.Join(t.TempDir(), "gatehouse.log")
	l, c, err := New("debug", "json", name)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	l.WithFields(logrus.Fields{"conn": 7, "remote": "127.0.0.1:5000"}).Info("stream opened")
	l.Debug("details")
	l.WithError(errors.New("boom")).Error("failed")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, name)
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	wants := []map[string]any{
		{"level": "info", "msg": "stream opened", "conn": 7.0, "remote": "127.0.0.1:5000"},
		{"level": "debug", "msg": "details"},
		{"level": "error", "msg": "failed", "error": "boom"},
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d not JSON: %q", i, line)
		}
		for k, v := range wants[i] {
			if m[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, m[k], v)
			}
		}
		ts, _ := m["time"].(string)
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("line %d: time %q is not RFC3339Nano UTC (%v)", i, ts, err)
		}
		if tm.Before(before.Add(-time.Second)) || tm.After(time.Now().Add(time.Second)) {
			t.Errorf("line %d: time %v out of range", i, tm)
		}
		if len(m) != len(wants[i])+1 {
			t.Errorf("line %d: unexpected fields in %v", i, m)
		}
	}
}

func TestLevelFiltering(t *testing.T) {
	tests := []struct {
		level string
		want  []string
	}{
		{"debug", []string{"d", "i", "w", "e"}},
		{"info", []string{"i", "w", "e"}},
		{"warn", []string{"w", "e"}},
		{"error", []string{"e"}},
	}
	for _, tc := range tests {
		name := filepath.Join(t.TempDir(), "log")
		l, c, err := New(tc.level, "json", name)
		if err != nil {
			t.Fatal(err)
		}
		l.Debug("d")
		l.Info("i")
		l.Warn("w")
		l.Error("e")
		c.Close()
		var got []string
		for _, line := range readLines(t, name) {
			var m struct{ Msg string }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Msg)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("level %s: logged %v, want %v", tc.level, got, tc.want)
		}
	}
}

func TestTextOutput(t *testing.T) {
	name := filepath.Join(t.TempDir(), "gatehouse.log")
	l, c, err := New("info", "text", name)
	if err != nil {
		t.Fatal(err)
	}
	l.WithFields(logrus.Fields{"host": "example.com", "empty": ""}).Warn("listener up")
	c.Close()
	lines := readLines(t, name)
	if len(lines) != 1 {
		t.Fatalf("lines %q", lines)
	}
	line := lines[0]
	for _, want := range []string{"level=warning", `msg="listener up"`, "host=example.com", `empty=""`} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\x1b[") {
		t.Errorf("colour codes in a file: %q", line)
	}
	i := strings.Index(line, `time="`)
	if i < 0 {
		t.Fatalf("no time in %q", line)
	}
	ts := line[i+6:]
	ts = ts[:strings.IndexByte(ts, '"')]
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") {
		t.Errorf("time %q is not RFC3339Nano UTC", ts)
	}
}

func TestTimestampsInUTC(t *testing.T) {
	zone := time.FixedZone("UTC+5", 5*3600)
	at := time.Date(2025, 3, 1, 12, 30, 0, 123456789, zone)
	for _, format := range []string{"text", "json"} {
		f, err := NewFormatter(format)
		if err != nil {
			t.Fatal(err)
		}
		e := &logrus.Entry{Logger: logrus.New(), Time: at, Level: logrus.InfoLevel, Message: "m", Data: logrus.Fields{}}
		out, err := f.Format(e)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "2025-03-01T07:30:00.123456789Z") {
			t.Errorf("%s: %q has no UTC timestamp", format, out)
		}
		if !e.Time.Equal(at) || e.Time.Location() != zone {
			t.Errorf("%s: formatter changed the entry", format)
		}
	}
}

func TestAppendsAndCloses(t *testing.T) {
	name := filepath.Join(t.TempDir(), "log")
	for i := range 2 {
		l, c, err := New("info", "json", name)
		if err != nil {
			t.Fatal(err)
		}
		l.Infof("run %d", i)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if l.Out != os.Stderr {
			t.Fatal("logger still points at the closed file")
		}
	}
	if lines := readLines(t, name); len(lines) != 2 {
		t.Fatalf("want 2 appended lines, got %q", lines)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("log file is world-accessible: %v", fi.Mode())
	}
}

func TestConcurrentLoggingAndClose(t *testing.T) {
	name := filepath.Join(t.TempDir(), "log")
	l, c, err := New("info", "text", name)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			l.WithField("i", i).Info("x")
		}
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
}
