package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/logging/archive"
	"gatehouse/s2s"
	"gatehouse/transports/component"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// archiveState is the compliance archive of a running server (issue 4).
type archiveState struct {
	a        *archive.Archive
	boundary *archive.Boundary
	log      logrus.FieldLogger
	failOpen bool

	stop     chan struct{} // ends the retention pruner
	prunerWG sync.WaitGroup
}

// serverActor is who the server itself acts as in admin_actions rows
// (retention pruning).
func serverActor() archive.Actor { return archive.Actor{Name: "server", Origin: "server"} }

// Archive priorities on the hook bus: before every module, so that a
// stanza is recorded before anything acts on it.
const (
	archiveHookPriority    = 1 << 20
	archiveSessionPriority = 1 << 20
	// retentionInterval is how often the server prunes past retention.
	retentionInterval = 24 * time.Hour
)

// OpenArchive opens the compliance archive configured in cfg (also used by
// `gatehouse archive`, which may run while the server does).
func OpenArchive(ctx context.Context, cfg *config.Config, log logrus.FieldLogger) (*archive.Archive, error) {
	ac := cfg.Archive
	a, err := archive.Open(ctx, archive.Options{
		Path:           ac.Path(cfg.DataDir, ac.File),
		AnchorPath:     ac.Path(cfg.DataDir, ac.AnchorFile),
		AnchorInterval: ac.AnchorInterval.D(),
		MaxBatch:       ac.MaxBatch,
		LockTimeout:    ac.LockTimeout.D(),
		SyncNormal:     ac.Sync == config.ArchiveSyncNormal,
		Log:            log,
	})
	if err != nil {
		return nil, fmt.Errorf("server: compliance archive: %w", err)
	}
	return a, nil
}

// openArchive opens the compliance archive and installs the boundary that
// records crossings (issue 4). Called from New after the router, the
// policy and federation exist: the recording boundary wraps
// policyBoundary, and link events of s2s and components are recorded.
func (s *Server) openArchive(ctx context.Context) error {
	ac := s.cfg.Archive
	log := s.log.WithField("component", "archive")
	a, err := OpenArchive(ctx, s.cfg, log)
	if err != nil {
		return err
	}
	st := &s.arc
	st.a, st.log, st.failOpen = a, log, ac.OnArchiveFailure == config.ArchiveAllow
	if m := s.metrics; m != nil {
		a.SetCommitObserver(func(_ int, d time.Duration, _ error) { m.ArchiveCommit(d) })
	}
	st.boundary = archive.NewBoundary(s.policyBoundary(), a, archive.BoundaryOptions{
		FailOpen: st.failOpen, Presence: ac.Presence, Log: log,
		Attribute: s.occupantAccount,
	})
	s.router.SetBoundary(st.boundary)

	if ac.Internal {
		s.recordInternal(ac.Presence)
	}
	s.bus.OnSessionBound(archiveSessionPriority, s.archiveLogon)
	s.bus.OnSessionEnded(archiveSessionPriority, s.archiveLogoff)
	obs := &linkRecorder{st: st}
	s.setLinkObserver(obs)
	if svc := s.S2S(); svc != nil {
		svc.SetObserver(s2sLink{obs})
	}

	// The policy in force is part of the record: every later stanza row
	// names its version.
	if _, err := a.Append(ctx, s.policyRecord("policy.loaded")); err != nil {
		_ = a.Close(ctx)
		return fmt.Errorf("server: compliance archive: %w", err)
	}
	log.WithFields(logrus.Fields{"file": a.Path(), "archive_id": a.ID(), "on_archive_failure": ac.OnArchiveFailure,
		"internal": ac.Internal, "presence": ac.Presence}).Info("compliance archive open")

	st.stop = make(chan struct{})
	if r := ac.Retention.D(); r > 0 {
		st.prunerWG.Add(1)
		go s.retention(r)
	}
	return nil
}

func (s *Server) policyRecord(action string) *archive.PolicyAction {
	return &archive.PolicyAction{Action: action, PolicyVersion: s.PolicyVersion(), Detail: s.cfg.Policy.File}
}

// closeArchive flushes and closes the archive; called from Run after every
// ingress has shut down, so nothing can cross any more.
func (s *Server) closeArchive(ctx context.Context) error {
	st := &s.arc
	if st.a == nil {
		return nil
	}
	close(st.stop)
	st.prunerWG.Wait()
	if err := st.a.Close(ctx); err != nil {
		return fmt.Errorf("server: compliance archive: %w", err)
	}
	return nil
}

// Archive returns the compliance archive (nil before New opened it).
func (s *Server) Archive() *archive.Archive { return s.arc.a }

// RecordAdminAction records an administrative action made outside the
// server process (the CLI working on the data directory: user and group
// changes) in the compliance archive of cfg, opening and closing it. It
// fails when the action cannot be recorded; callers that must not act
// unrecorded call it first.
func RecordAdminAction(ctx context.Context, cfg *config.Config, by archive.Actor, action, target, detail string) (err error) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := OpenArchive(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := a.Close(ctx); err == nil && cerr != nil {
			err = fmt.Errorf("server: compliance archive: %w", cerr)
		}
	}()
	if _, err := a.Append(ctx, &archive.AdminAction{Actor: by.Name, Origin: by.Origin, Action: action, Target: target, Detail: detail}); err != nil {
		return fmt.Errorf("server: recording %s: %w", action, err)
	}
	return nil
}

// recordInternal records stanzas between local accounts (archive.internal)
// when they reach the local zone, before any module delivers them. They
// never pass the boundary (the router calls it only for crossings).
func (s *Server) recordInternal(presence bool) {
	kinds := []stanza.Kind{stanza.KindMessage, stanza.KindPresence}
	for _, k := range kinds {
		for _, addr := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
			s.bus.On(hook.Event{Dir: hook.In, Kind: k, Addr: addr}, archiveHookPriority, func(ctx context.Context, env *router.Envelope) bool {
				return s.archiveInternal(ctx, env, presence)
			})
		}
	}
}

// archiveInternal records one internal stanza; true (consumed) when it
// could not be recorded and the crossing was refused.
func (s *Server) archiveInternal(ctx context.Context, env *router.Envelope, presence bool) bool {
	st := &s.arc
	// Stanzas from outside were recorded at the boundary; bounces and
	// notices the router or the boundary made are not new traffic.
	if env.Src.Zone != router.ZoneLocal || env.Flags&router.BoundaryDone != 0 || env.Stanza.From.Localpart() == "" {
		return false
	}
	if !archive.Records(env.Stanza, presence) {
		return false
	}
	rec := archive.FromEnvelope(env)
	if _, err := st.a.Append(ctx, rec); err != nil {
		st.log.WithError(err).WithFields(logrus.Fields{"from": env.Stanza.From.String(), "to": env.Stanza.To.String()}).
			Error("compliance archive: internal stanza not recorded; " + st.action())
		if st.failOpen {
			return false
		}
		s.bus.Bounce(ctx, env, stanza.ResourceConstraint, archive.RefusedText)
		return true
	}
	return false
}

func (st *archiveState) action() string {
	if st.failOpen {
		return "delivered UNRECORDED (on_archive_failure: allow)"
	}
	return "refused with resource-constraint"
}

// archiveLogon records a bound resource. A log-on that cannot be recorded
// ends the session (resource-constraint) unless the archive fails open.
func (s *Server) archiveLogon(ctx context.Context, sess *sessions.Session) {
	st := &s.arc
	if _, err := st.a.Append(ctx, sessionRecord(archive.EventLogon, sess, time.Time{})); err != nil {
		st.log.WithError(err).WithField("jid", sess.JID.String()).Error("compliance archive: log-on not recorded; " + st.sessionAction())
		if !st.failOpen {
			sess.Close(string(stanza.ResourceConstraint), archive.RefusedText)
		}
	}
}

func (st *archiveState) sessionAction() string {
	if st.failOpen {
		return "session kept (on_archive_failure: allow)"
	}
	return "session closed with resource-constraint"
}

// archiveLogoff records a session's end. Nothing can be refused any more;
// a failure is logged.
func (s *Server) archiveLogoff(ctx context.Context, sess *sessions.Session) {
	st := &s.arc
	// The session's context may already be cancelled (shutdown); the
	// record must still be written.
	ctx = context.WithoutCancel(ctx)
	if _, err := st.a.Append(ctx, sessionRecord(archive.EventLogoff, sess, time.Now())); err != nil && !errors.Is(err, archive.ErrClosed) {
		st.log.WithError(err).WithField("jid", sess.JID.String()).Error("compliance archive: log-off not recorded")
	}
}

func sessionRecord(event string, sess *sessions.Session, end time.Time) *archive.SessionEvent {
	r := &archive.SessionEvent{
		Event: event, Account: sess.JID.Bare().String(), Resource: sess.JID.Resourcepart(), ConnID: sess.Conn,
		ClientAddr: sess.Info.RemoteAddr, TLSVersion: sess.Info.TLSVersion, SASLMechanism: sess.Info.Mechanism,
		Started: sess.Info.Started,
	}
	if !end.IsZero() && !sess.Info.Started.IsZero() {
		r.Duration = end.Sub(sess.Info.Started)
	}
	return r
}

// linkRecorder records s2s and component links going up and down. A link
// whose coming up cannot be recorded is refused (fail-closed).
type linkRecorder struct{ st *archiveState }

var (
	_ component.LinkObserver = (*linkRecorder)(nil)
	_ s2s.LinkObserver       = s2sLink{}
)

func (r *linkRecorder) up(ctx context.Context, ev *archive.LinkEvent) error {
	if _, err := r.st.a.Append(ctx, ev); err != nil {
		r.st.log.WithError(err).WithField("network", ev.Network).Error("compliance archive: link-up not recorded; " + r.linkAction())
		if r.st.failOpen {
			return nil
		}
		return err
	}
	return nil
}

func (r *linkRecorder) linkAction() string {
	if r.st.failOpen {
		return "link kept (on_archive_failure: allow)"
	}
	return "link refused"
}

func (r *linkRecorder) down(ctx context.Context, ev *archive.LinkEvent) {
	if _, err := r.st.a.Append(context.WithoutCancel(ctx), ev); err != nil && !errors.Is(err, archive.ErrClosed) {
		r.st.log.WithError(err).WithField("network", ev.Network).Error("compliance archive: link-down not recorded")
	}
}

// LinkUp implements component.LinkObserver.
func (r *linkRecorder) LinkUp(ctx context.Context, l component.Link) error {
	return r.up(ctx, &archive.LinkEvent{Event: archive.EventUp, Zone: archive.ZoneTransport, Network: l.Domain,
		ConnID: l.Conn, PeerAddr: l.Remote})
}

// LinkDown implements component.LinkObserver.
func (r *linkRecorder) LinkDown(ctx context.Context, l component.Link, reason string) {
	r.down(ctx, &archive.LinkEvent{Event: archive.EventDown, Zone: archive.ZoneTransport, Network: l.Domain,
		ConnID: l.Conn, PeerAddr: l.Remote, Since: l.Since, Reason: reason})
}

// s2sLink adapts the federation observer (its method names are the same
// as the component one's, with another link type).
type s2sLink struct{ *linkRecorder }

// LinkUp implements s2s.LinkObserver.
func (r s2sLink) LinkUp(ctx context.Context, l s2s.LinkInfo) error {
	return r.up(ctx, s2sEvent(archive.EventUp, l, ""))
}

// LinkDown implements s2s.LinkObserver.
func (r s2sLink) LinkDown(ctx context.Context, l s2s.LinkInfo, reason string) {
	r.down(ctx, s2sEvent(archive.EventDown, l, reason))
}

func s2sEvent(event string, l s2s.LinkInfo, reason string) *archive.LinkEvent {
	ev := &archive.LinkEvent{Event: event, Zone: archive.ZoneRemote, Network: l.Remote, ConnID: l.Conn,
		PeerAddr: l.Peer, Reason: reason}
	if event == archive.EventDown {
		ev.Since = l.Since
	}
	return ev
}

// retention prunes rows older than r once at start and then daily;
// legal holds are respected by Prune itself.
func (s *Server) retention(r time.Duration) {
	st := &s.arc
	defer st.prunerWG.Done()
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			select {
			case <-st.stop:
				cancel()
			case <-done:
			}
		}()
		res, err := st.a.Prune(ctx, archive.PruneOptions{Before: time.Now().Add(-r), By: serverActor(), Reason: "retention " + r.String()})
		close(done)
		cancel()
		switch {
		case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, archive.ErrClosed):
			st.log.WithError(err).Error("compliance archive: retention prune failed")
		case err == nil && res.Removed > 0:
			st.log.WithFields(logrus.Fields{"removed": res.Removed, "held": res.Held}).Info("compliance archive: rows past retention pruned")
		}
		select {
		case <-st.stop:
			return
		case <-t.C:
		}
	}
}
