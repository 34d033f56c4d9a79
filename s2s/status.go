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

// Status is the snapshot of the links the server writes for
// `gatehouse federation status` until the admin API (issue 8) can ask the
// live server.
type Status struct {
	PID     int        `json:"pid"`
	Written time.Time  `json:"written"`
	Mode    string     `json:"mode"`
	Links   []LinkInfo `json:"links"`
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

// writeStatus replaces the snapshot when the links changed since last;
// last is the previous content (without the time stamp).
func (s *Service) writeStatus(last []byte) []byte {
	if s.cfg.StatusFile == "" {
		return last
	}
	links := s.Links()
	for i := range links {
		links[i].Since = links[i].Since.UTC().Truncate(time.Second)
	}
	body, err := json.Marshal(Status{PID: os.Getpid(), Mode: s.cfg.Policy.Mode(), Links: links})
	if err != nil || bytes.Equal(body, last) {
		return last
	}
	full, _ := json.MarshalIndent(Status{PID: os.Getpid(), Written: time.Now().UTC().Truncate(time.Second),
		Mode: s.cfg.Policy.Mode(), Links: links}, "", "  ")
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
