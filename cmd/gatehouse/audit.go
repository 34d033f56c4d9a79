package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

// auditCLI records an admin action taken by the CLI on the data directory
// in the compliance archive's admin log, before the action is carried out:
// if it cannot be recorded, the caller does not act. (Actions through the
// running server's admin API are recorded by the server.)
func auditCLI(ctx context.Context, cfg *config.Config, action, target string) error {
	log := logrus.New()
	log.SetOutput(io.Discard)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("not done: data directory: %w", err)
	}
	a, err := server.OpenArchive(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("not done: the action could not be recorded in the compliance archive: %w", err)
	}
	by := archiveActor()
	_, err = a.Append(ctx, &archive.AdminAction{Actor: by.Name, Origin: by.Origin, Action: action, Target: target})
	if cerr := a.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("not done: the action could not be recorded in the compliance archive: %w", err)
	}
	return nil
}
