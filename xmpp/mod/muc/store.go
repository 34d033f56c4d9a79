package muc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strings"

	_ "github.com/mattn/go-sqlite3" // database/sql driver

	"gatehouse/xmpp/stanza"
)

// StoredRoom is what is kept of a persistent room.
type StoredRoom struct {
	Config       RoomConfig             `json:"config"`
	Affiliations map[string]Affiliation `json:"affiliations,omitempty"`
	Subject      string                 `json:"subject,omitempty"` // the subject message, XML
	Salt         []byte                 `json:"salt"`
}

// Store keeps persistent rooms in a SQLite file of its own: one row per
// room with its state as JSON (rooms are few, small and read once at
// start).
type Store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS rooms (
	name TEXT NOT NULL PRIMARY KEY,
	data TEXT NOT NULL
) WITHOUT ROWID;
`

// OpenStore opens or creates the rooms database at path (mode 0600).
func OpenStore(ctx context.Context, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("muc: open %s: %w", path, err)
	}
	_ = f.Close()
	base := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite3", base+"?mode=rw&_journal_mode=WAL&_busy_timeout=5000&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("muc: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("muc: schema: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("muc: close store: %w", err)
	}
	return nil
}

// Load returns every stored room by name.
func (s *Store) Load(ctx context.Context) (map[string]StoredRoom, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, data FROM rooms`)
	if err != nil {
		return nil, fmt.Errorf("muc: load rooms: %w", err)
	}
	defer rows.Close()
	out := make(map[string]StoredRoom)
	for rows.Next() {
		var name, data string
		if err := rows.Scan(&name, &data); err != nil {
			return nil, fmt.Errorf("muc: load rooms: %w", err)
		}
		var sr StoredRoom
		if err := json.Unmarshal([]byte(data), &sr); err != nil {
			return nil, fmt.Errorf("muc: room %q: %w", name, err)
		}
		out[name] = sr
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("muc: load rooms: %w", err)
	}
	return out, nil
}

// Save stores (or replaces) a room.
func (s *Store) Save(ctx context.Context, name string, sr StoredRoom) error {
	data, err := json.Marshal(sr)
	if err != nil {
		return fmt.Errorf("muc: save %q: %w", name, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO rooms (name, data) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data`, name, string(data)); err != nil {
		return fmt.Errorf("muc: save %q: %w", name, err)
	}
	return nil
}

// Delete forgets a room.
func (s *Store) Delete(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM rooms WHERE name = ?`, name); err != nil {
		return fmt.Errorf("muc: delete %q: %w", name, err)
	}
	return nil
}

var errNoStanza = errors.New("muc: no stanza in stored XML")

func decodeStanza(b []byte) (*stanza.Stanza, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoStanza, err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.Parse(d, start)
		}
	}
}
