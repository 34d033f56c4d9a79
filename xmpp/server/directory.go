package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/directory"
	"gatehouse/xmpp/storage"
)

// directoryState is the corporate directory of a running server (issue 9).
type directoryState struct {
	dir  *directory.Directory
	sync *directory.Syncer
	log  logrus.FieldLogger
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	last    time.Time
	result  directory.Result
	lastErr error
}

// setupDirectory connects the directory (when enabled), runs a first sync
// and starts the periodic refresh. A directory that is down at start-up
// is logged, not fatal: local accounts keep working, directory logins
// fail with temporary-auth-failure until it answers.
func (s *Server) setupDirectory(ctx context.Context) error {
	dc := s.cfg.Directory
	if !dc.Enabled {
		return nil
	}
	d, err := directory.New(dc)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	st := &s.dirs
	st.dir = d
	st.log = s.log.WithField("component", "directory")
	st.sync = &directory.Syncer{Dir: d, DB: s.db, Cfg: dc, Domain: s.cfg.Hosts[0], Roster: s.rosterMod, Log: st.log}
	st.stop = make(chan struct{})
	s.runDirectorySync(ctx)
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		t := time.NewTicker(dc.Refresh.D())
		defer t.Stop()
		for {
			select {
			case <-st.stop:
				return
			case <-t.C:
				s.runDirectorySync(context.Background())
			}
		}
	}()
	s.adm.api.Handle("POST /v1/directory/sync", func(ctx context.Context, _ *admin.Request) (any, error) {
		return s.runDirectorySync(ctx)
	})
	s.adm.api.Handle("GET /v1/directory/status", func(context.Context, *admin.Request) (any, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		out := map[string]any{"url": dc.URL, "last_sync": st.last, "result": st.result}
		if st.lastErr != nil {
			out["error"] = st.lastErr.Error()
		}
		return out, nil
	})
	return nil
}

// runDirectorySync syncs once and records the outcome.
func (s *Server) runDirectorySync(ctx context.Context) (directory.Result, error) {
	st := &s.dirs
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, err := st.sync.Sync(ctx)
	st.mu.Lock()
	st.last, st.result, st.lastErr = time.Now().UTC(), res, err
	st.mu.Unlock()
	log := st.log.WithFields(logrus.Fields{"users": res.Users, "created": res.Created, "locked": res.Locked,
		"groups": res.Groups, "roster_added": res.RosterAdded, "roster_removed": res.RosterRemoved})
	if err != nil {
		log.WithError(err).Error("directory sync failed; the last synced state stays in force")
		return res, err
	}
	log.Info("directory synced")
	return res, nil
}

func (s *Server) shutdownDirectory() {
	st := &s.dirs
	if st.dir == nil {
		return
	}
	close(st.stop)
	st.wg.Wait()
	_ = st.dir.Close()
}

// directoryUser reports whether user's logins go to the directory: it was
// synced from it (local-only accounts keep their own credentials).
func (s *Server) directoryUser(ctx context.Context, user string) (bool, error) {
	if s.dirs.dir == nil {
		return false, nil
	}
	owned, err := s.db.DirectoryOwned(ctx, storage.DirectoryUser)
	if err != nil {
		return false, err
	}
	_, ok := owned[user]
	return ok, nil
}

// verifyPlain checks a PLAIN password with a directory bind for directory
// users, and for names unknown locally (a directory user who logs in
// before the next sync). On success with auth scram_cache, SCRAM keys of
// the password are kept for later SCRAM logins.
func (s *Server) verifyPlain(ctx context.Context, user, password string) (bool, error) {
	if s.dirs.dir == nil {
		return false, nil
	}
	if err := s.accountWait(user); err != nil {
		return true, err
	}
	mine, err := s.directoryUser(ctx, user)
	if err != nil {
		return true, auth.NewFailure("temporary-auth-failure", "", err)
	}
	if !mine {
		if exists, err := s.db.Exists(ctx, user); err != nil {
			return true, auth.NewFailure("temporary-auth-failure", "", err)
		} else if exists {
			return false, nil // a local account
		}
	}
	err = s.dirs.dir.Authenticate(ctx, user, password)
	switch {
	case errors.Is(err, directory.ErrDisabled):
		return true, auth.NewFailure("account-disabled", "this account is disabled in the directory", err)
	case errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrNoUser):
		return true, auth.NewFailure("not-authorized", "", err)
	case err != nil:
		s.dirs.log.WithError(err).Warn("directory login failed: directory unavailable")
		return true, auth.NewFailure("temporary-auth-failure", "the directory is not reachable; try again later", err)
	}
	// Known now, even before the next sync.
	if cerr := s.db.CreateUser(ctx, user, auth.Credentials{}); cerr != nil && !errors.Is(cerr, storage.ErrUserExists) {
		return true, auth.NewFailure("temporary-auth-failure", "", cerr)
	}
	if !mine {
		if err := s.db.SetDirectoryOwned(ctx, storage.DirectoryUser, user, ""); err != nil {
			return true, auth.NewFailure("temporary-auth-failure", "", err)
		}
	}
	if s.cfg.Directory.Auth == config.DirectoryAuthSCRAMCache {
		if creds, err := auth.NewCredentials(password, s.cfg.Auth.SCRAMIterations); err == nil {
			if err := s.db.SetCredentials(ctx, user, creds); err == nil {
				_ = s.db.SetSCRAMCachedAt(ctx, user, time.Now())
			}
		}
	}
	return true, nil
}

// directoryLookup gives SCRAM the cached keys of a directory user while
// they are fresh and the directory still has the user enabled; otherwise
// the user must log in with PLAIN (a bind) first.
func (s *Server) directoryLookup(ctx context.Context, user string, c auth.Credentials) (auth.Credentials, error) {
	mine, err := s.directoryUser(ctx, user)
	if err != nil || !mine {
		return c, err
	}
	at, ok, err := s.db.SCRAMCachedAt(ctx, user)
	if err != nil {
		return c, err
	}
	if s.cfg.Directory.Auth != config.DirectoryAuthSCRAMCache || !ok || time.Since(at) > s.cfg.Directory.SCRAMCacheTTL.D() {
		return auth.Credentials{}, auth.NewFailure("not-authorized", "log in with PLAIN once: your password is checked against the directory", nil)
	}
	switch err := s.dirs.dir.Check(ctx, user); {
	case errors.Is(err, directory.ErrDisabled):
		return auth.Credentials{}, auth.NewFailure("account-disabled", "this account is disabled in the directory", err)
	case errors.Is(err, directory.ErrNoUser):
		return auth.Credentials{}, auth.NewFailure("not-authorized", "", err)
	case err != nil:
		return auth.Credentials{}, auth.NewFailure("temporary-auth-failure", "the directory is not reachable; try again later", err)
	}
	return c, nil
}
