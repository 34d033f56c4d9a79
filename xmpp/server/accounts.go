package server

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/storage"
)

// DeleteAccount removes an account and everything stored for it: the main
// database's rows (credentials, roster, offline messages, vCard, private
// storage) and the user's message history (XEP-0313), which lives in a
// file of its own. It works whether or not a server is running on the data
// directory (SQLite in WAL mode serialises the writers).
func DeleteAccount(ctx context.Context, cfg *config.Config, db *storage.DB, user string, log logrus.FieldLogger) error {
	if err := db.DeleteUser(ctx, user); err != nil {
		return err
	}
	if !cfg.MAM.Enabled {
		return nil
	}
	m, err := mam.Open(ctx, mam.Options{Config: cfg.MAM, DataDir: cfg.DataDir, Log: log})
	if err != nil {
		return fmt.Errorf("account %s deleted, but its message history could not be opened: %w", user, err)
	}
	defer m.Close()
	if err := m.DeleteUser(ctx, user); err != nil {
		return fmt.Errorf("account %s deleted, but deleting its message history failed: %w", user, err)
	}
	return nil
}
