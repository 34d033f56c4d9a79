package s2s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StatusFile is the name of the link snapshot in the data directory.
const StatusFile = "federation-status.json"

// Status is what `gatehouse federation status` shows: the live links from
// the admin API (GET /v1/federation), or the snapshot of them the server
// keeps in the data directory, for when the admin socket is off.
type Status struct {
	PID     int       `json:"pid"`
	Written time.Time `json:"written"`
	Mode    string    `json:"mode"`
	// Listen holds the bound listeners ("tls://" marks direct TLS).
	Listen []string   `json:"listen,omitempty"`
	Links  []LinkInfo `json:"links"`
}

// ReadStatus reads a snapshot written by a server.
func ReadStatus(path string) (*Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("s2s: status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("s2s: status %s: %w", path, err)
	}
	return &st, nil
}

// Status returns the live status.
func (s *Service) Status() Status {
	s.mu.Lock()
	listen := append([]string(nil), s.listen...)
	s.mu.Unlock()
	return Status{PID: os.Getpid(), Written: time.Now().UTC(), Mode: s.cfg.Policy.Mode(), Listen: listen, Links: s.Links()}
}

// writeStatus replaces the snapshot when the links changed since last;
// last is the previous content (without the time stamp).
func (s *Service) writeStatus(last []byte) []byte {
	if s.cfg.StatusFile == "" {
		return last
	}
	st := s.Status()
	for i := range st.Links {
		st.Links[i].Since = st.Links[i].Since.UTC().Truncate(time.Second)
		st.Links[i].Retry = st.Links[i].Retry.UTC().Truncate(time.Second)
	}
	st.Written = time.Time{}
	body, err := json.Marshal(st)
	if err != nil || bytes.Equal(body, last) {
		return last
	}
	st.Written = time.Now().UTC().Truncate(time.Second)
	full, _ := json.MarshalIndent(st, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(s.cfg.StatusFile), ".status-*")
	if err != nil {
		s.log.WithError(err).Debug("cannot write the federation status")
		return last
	}
	_, err = tmp.Write(append(full, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.cfg.StatusFile)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		s.log.WithError(err).Debug("cannot write the federation status")
		return last
	}
	return body
}
