// Package applog sets up the server's operational log (start-up, shutdown,
// errors, connection events) with logrus.
//
// New always builds a fresh *logrus.Logger; the logrus standard logger is
// never configured or used, so tests and embedded servers can each have
// their own. Timestamps are RFC 3339 with nanoseconds, in UTC.
//
// This package must not import other gatehouse packages. It never logs
// anything itself; callers must not pass passwords or SASL payloads as
// fields.
package applog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Sentinel errors; New wraps one of them.
var (
	ErrLevel  = errors.New("applog: unknown log level")
	ErrFormat = errors.New("applog: unknown log format")
	ErrFile   = errors.New("applog: cannot open log file")
)

// ParseLevel maps "debug", "info", "warn" or "error" to a logrus level; ""
// means info.
func ParseLevel(s string) (logrus.Level, error) {
	switch s {
	case "debug":
		return logrus.DebugLevel, nil
	case "", "info":
		return logrus.InfoLevel, nil
	case "warn":
		return logrus.WarnLevel, nil
	case "error":
		return logrus.ErrorLevel, nil
	}
	return 0, fmt.Errorf("%w %q (want debug, info, warn or error)", ErrLevel, s)
}

// NewFormatter returns the formatter for "text" (also "") or "json", with
// RFC3339Nano timestamps in UTC.
func NewFormatter(format string) (logrus.Formatter, error) {
	switch format {
	case "", "text":
		return utc{&logrus.TextFormatter{
			FullTimestamp:    true,
			TimestampFormat:  time.RFC3339Nano,
			QuoteEmptyFields: true,
		}}, nil
	case "json":
		return utc{&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano}}, nil
	}
	return nil, fmt.Errorf("%w %q (want text or json)", ErrFormat, format)
}

// utc formats entries with their time converted to UTC.
type utc struct{ f logrus.Formatter }

func (u utc) Format(e *logrus.Entry) ([]byte, error) {
	c := *e
	c.Time = e.Time.UTC()
	return u.f.Format(&c)
}

// New returns a logger at level ("debug", "info", "warn", "error"; ""
// means info) writing in format ("text" or "json"; "" means text) to file,
// which is created if needed and appended to, or to standard error when
// file is "".
//
// The returned Closer closes the file (a no-op for standard error); after
// it, the logger writes to standard error so late messages are not lost.
// Close is safe to call more than once.
func New(level, format, file string) (*logrus.Logger, io.Closer, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	fmtr, err := NewFormatter(format)
	if err != nil {
		return nil, nil, err
	}
	l := logrus.New()
	l.SetLevel(lvl)
	l.SetFormatter(fmtr)
	if file == "" {
		l.SetOutput(os.Stderr)
		return l, nopCloser{}, nil
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	l.SetOutput(f)
	return l, &fileCloser{l: l, f: f}, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

type fileCloser struct {
	l    *logrus.Logger
	f    *os.File
	once sync.Once
	err  error
}

func (c *fileCloser) Close() error {
	c.once.Do(func() {
		c.l.SetOutput(os.Stderr) // takes the logger's lock: no write is in flight on f
		c.err = c.f.Close()
	})
	return c.err
}
