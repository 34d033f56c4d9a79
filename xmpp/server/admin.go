package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// adminState is the admin API (xmpp/admin) of the running server.
type adminState struct {
	api        *admin.Server
	started    time.Time
	loadConfig func() (*config.Config, error)
}

// SetConfigLoader tells the server how to re-read its configuration for
// `gatehouse reload` (the serve command passes its -c file loader).
func (s *Server) SetConfigLoader(f func() (*config.Config, error)) { s.adm.loadConfig = f }

// Admin returns the admin API so subsystems can register endpoints.
func (s *Server) Admin() *admin.Server { return s.adm.api }

// setupAdmin creates the API and its core endpoints; listenAdmin binds it.
func (s *Server) setupAdmin() {
	s.adm.started = time.Now()
	s.adm.api = admin.New(s.log.WithField("component", "admin"))
	api := s.adm.api
	api.Handle("GET /v1/status", s.adminStatus)
	api.Handle("GET /v1/sessions", s.adminSessions)
	api.Handle("POST /v1/sessions/kick", s.adminKick)
	api.Handle("POST /v1/reload", s.adminReload)
	api.Handle("POST /v1/users/{user}/delete", s.adminDeleteUser)
	api.Handle("POST /v1/users/{user}/lock", s.adminLock(true))
	api.Handle("POST /v1/users/{user}/unlock", s.adminLock(false))
	api.SetAuditor(archiveAuditor{s})
}

// archiveAuditor records admin API actions in the compliance archive's
// admin_actions table. It looks the archive up at call time: the archive
// opens after the admin API is set up.
type archiveAuditor struct{ s *Server }

func (a archiveAuditor) AdminAction(ctx context.Context, caller, action, detail string) error {
	arc := a.s.arc.a
	if arc == nil {
		return nil // no compliance archive configured
	}
	_, err := arc.Append(ctx, &archive.AdminAction{Actor: caller, Origin: "admin-api", Action: action, Detail: detail})
	return err
}

// listenAdmin binds the admin socket (and the optional loopback HTTP).
func (s *Server) listenAdmin() error {
	if p := s.cfg.AdminSocketPath(); p != "" {
		ln, err := s.adm.api.ListenUnix(p)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.log.WithField("socket", ln.Addr().String()).Info("admin API listening")
	}
	if a := s.cfg.Admin.HTTPListen; a != "" {
		tok, err := os.ReadFile(s.cfg.Admin.TokenFile)
		if err != nil {
			return fmt.Errorf("server: admin token: %w", err)
		}
		ln, err := s.adm.api.ListenHTTP(a, []byte(strings.TrimSpace(string(tok))))
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.log.WithField("addr", ln.Addr().String()).Info("admin HTTP API listening")
	}
	return nil
}

// Status is the answer of GET /v1/status.
type Status struct {
	Version    string    `json:"version"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Uptime     string    `json:"uptime"`
	Hosts      []string  `json:"hosts"`
	Sessions   int       `json:"sessions"`
	Users      int       `json:"users_online"`
	Goroutines int       `json:"goroutines"`
	HeapBytes  uint64    `json:"heap_bytes"`
}

func (s *Server) adminStatus(ctx context.Context, _ *admin.Request) (any, error) {
	all := s.table.All()
	users := map[string]bool{}
	for _, ss := range all {
		users[ss.JID.Bare().String()] = true
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Status{
		Version: Version, PID: os.Getpid(), Started: s.adm.started.UTC(),
		Uptime: time.Since(s.adm.started).Round(time.Second).String(),
		Hosts:  s.cfg.Hosts, Sessions: len(all), Users: len(users),
		Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc,
	}, nil
}

// SessionInfo is one row of GET /v1/sessions.
type SessionInfo struct {
	JID       string    `json:"jid"`
	Address   string    `json:"address"`
	TLS       string    `json:"tls"`
	Mechanism string    `json:"sasl"`
	Client    string    `json:"client"` // entity caps node (XEP-0115) of the client, if announced
	Started   time.Time `json:"started"`
	IdleSecs  int64     `json:"idle_seconds"`
	Available bool      `json:"available"`
	Priority  int       `json:"priority"`
}

func sessionInfo(ss *sessions.Session) SessionInfo {
	si := SessionInfo{
		JID: ss.JID.String(), Address: ss.Info.RemoteAddr, TLS: ss.Info.TLSVersion,
		Mechanism: ss.Info.Mechanism, Started: ss.Info.Started.UTC(),
		IdleSecs: int64(ss.Idle() / time.Second), Available: ss.Available(), Priority: ss.Priority(),
	}
	if p := ss.Presence(); p != nil {
		if c := p.Child("http://jabber.org/protocol/caps", "c"); c != nil {
			si.Client = c.AttrValue("node")
		}
	}
	return si
}

func (s *Server) adminSessions(ctx context.Context, r *admin.Request) (any, error) {
	var filter jid.JID
	if u := r.Query("user"); u != "" {
		j, err := s.localJID(u)
		if err != nil {
			return nil, err
		}
		filter = j
	}
	out := []SessionInfo{}
	for _, ss := range s.table.All() {
		if filter.Localpart() != "" && !ss.JID.Bare().Equal(filter.Bare()) {
			continue
		}
		out = append(out, sessionInfo(ss))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out, nil
}

// localJID parses a user name or JID of a hosted domain.
func (s *Server) localJID(name string) (jid.JID, error) {
	if !strings.Contains(name, "@") {
		name += "@" + s.cfg.Hosts[0]
	}
	j, err := jid.Parse(name)
	if err != nil || j.Localpart() == "" || !s.bus.IsHost(j.Domainpart()) {
		return jid.JID{}, fmt.Errorf("%w: %q is not a user of this server (hosts: %s)", admin.ErrBadRequest, name, strings.Join(s.cfg.Hosts, ", "))
	}
	return j, nil
}

// KickRequest is the body of POST /v1/sessions/kick.
type KickRequest struct {
	// JID is a full JID (one session) or a bare JID / user name (all of
	// the user's sessions).
	JID    string `json:"jid"`
	Reason string `json:"reason"`
}

// KickResult lists the sessions that were closed.
type KickResult struct {
	Kicked []string `json:"kicked"`
}

func (s *Server) adminKick(ctx context.Context, r *admin.Request) (any, error) {
	var req KickRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	j, err := s.localJID(req.JID)
	if err != nil {
		return nil, err
	}
	text := req.Reason
	if text == "" {
		text = "disconnected by an administrator"
	}
	res := KickResult{Kicked: s.kick(j, string(stanza.PolicyViolation), text)}
	if len(res.Kicked) == 0 {
		return nil, fmt.Errorf("%w: %s has no session", admin.ErrNotFound, j)
	}
	return res, nil
}

// kick closes j's session (full JID) or all of the user's sessions (bare)
// with the stream error cond, and returns the JIDs closed.
func (s *Server) kick(j jid.JID, cond, text string) []string {
	var targets []*sessions.Session
	if j.Resourcepart() != "" {
		if ss := s.table.Get(j); ss != nil {
			targets = append(targets, ss)
		}
	} else {
		targets = s.table.Resources(j)
	}
	kicked := make([]string, 0, len(targets))
	for _, ss := range targets {
		ss.Close(cond, text)
		kicked = append(kicked, ss.JID.String())
	}
	sort.Strings(kicked)
	return kicked
}

// ReloadResult is what a reload did (also the answer of POST /v1/reload):
// the parts re-read, and the parts that failed with why (they keep their
// previous state).
type ReloadResult struct {
	Reloaded []string          `json:"reloaded"`
	Failed   map[string]string `json:"failed,omitempty"`
}

func (s *Server) adminReload(ctx context.Context, _ *admin.Request) (any, error) {
	if s.adm.loadConfig == nil {
		return nil, errors.New("this server was started without a configuration loader; send it SIGHUP")
	}
	cfg, err := s.adm.loadConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: the configuration is invalid, nothing was reloaded: %v", admin.ErrBadRequest, err)
	}
	return s.Reload(cfg), nil
}

// DeleteUserResult is the answer of POST /v1/users/{user}/delete.
type DeleteUserResult struct {
	Deleted string   `json:"deleted"`
	Kicked  []string `json:"kicked"`
}

func (s *Server) adminDeleteUser(ctx context.Context, r *admin.Request) (any, error) {
	j, err := s.localJID(r.PathValue("user"))
	if err != nil {
		return nil, err
	}
	user := j.Localpart()
	if err := s.db.DeleteUser(ctx, user); err != nil {
		if errors.Is(err, storage.ErrNoUser) {
			return nil, fmt.Errorf("%w: no user %q", admin.ErrNotFound, user)
		}
		return nil, err
	}
	if err := s.mam.DeleteUser(ctx, user); err != nil {
		return nil, fmt.Errorf("account %s deleted, but deleting its message history failed: %w", user, err)
	}
	// The account is gone: its sessions end (RFC 6120 §4.9.3.13 not-authorized
	// is what a server sends when the credentials no longer hold).
	kicked := s.kick(j.Bare(), "not-authorized", "the account was deleted")
	return DeleteUserResult{Deleted: j.Bare().String(), Kicked: kicked}, nil
}

// LockResult is the answer of POST /v1/users/{user}/lock and /unlock.
type LockResult struct {
	User   string   `json:"user"`
	Locked bool     `json:"locked"`
	Kicked []string `json:"kicked"`
}

// adminLock locks an account (its sessions end at once and logins fail
// with account-disabled) or unlocks it.
func (s *Server) adminLock(lock bool) admin.Handler {
	return func(ctx context.Context, r *admin.Request) (any, error) {
		j, err := s.localJID(r.PathValue("user"))
		if err != nil {
			return nil, err
		}
		if err := s.db.SetLocked(ctx, j.Localpart(), lock); err != nil {
			if errors.Is(err, storage.ErrNoUser) {
				return nil, fmt.Errorf("%w: no user %q", admin.ErrNotFound, j.Localpart())
			}
			return nil, err
		}
		res := LockResult{User: j.Bare().String(), Locked: lock, Kicked: []string{}}
		if lock {
			res.Kicked = s.kick(j.Bare(), "not-authorized", "the account was locked by an administrator")
		}
		return res, nil
	}
}
