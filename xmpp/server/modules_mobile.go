package server

import (
	"context"
	"fmt"
	"path/filepath"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/mod/adhoc"
	"gatehouse/xmpp/mod/extdisco"
	"gatehouse/xmpp/mod/push"
	"gatehouse/xmpp/mod/register"
	"gatehouse/xmpp/stanza"
)

// mobileState holds the modules of issue 3's deliverable 6: push
// (XEP-0357), external services (XEP-0215), ad-hoc commands (XEP-0050)
// and in-band registration (XEP-0077).
type mobileState struct {
	pushStore *push.Store
	reg       *register.Module
}

// registerMobileModules attaches push, external services, ad-hoc commands
// and registration to the bus.
func (s *Server) registerMobileModules(ctx context.Context) error {
	log := s.log.WithField("component", "mod")
	adhoc.New(s.db, s.cfg.Adhoc.Admins, log.WithField("mod", "adhoc")).Register(s.bus)

	var svcs []extdisco.Service
	for _, e := range s.cfg.ExternalServices {
		svcs = append(svcs, extdisco.Service{Type: e.Type, Host: e.Host, Port: e.Port, Transport: e.Transport, Name: e.Name,
			Username: e.Username, Password: e.Password, Secret: e.Secret, TTL: e.TTL.D()})
	}
	extdisco.New(svcs, nil).Register(s.bus)

	rc := s.cfg.Register
	s.mob.reg = register.New(register.Config{Enabled: rc.Enabled, MaxPerIP: rc.MaxPerIP, Window: rc.Window.D(),
		MinPasswordLength: rc.MinPasswordLength, SCRAMIterations: s.cfg.Auth.SCRAMIterations}, s.db, log.WithField("mod", "register"), nil)
	s.mob.reg.Register(s.bus)

	if !s.cfg.Push.Enabled {
		return nil
	}
	path := s.cfg.Push.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(s.cfg.DataDir, path)
	}
	st, err := push.OpenStore(ctx, path)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.mob.pushStore = st
	away := func(j jid.JID) bool { return s.c2s != nil && s.c2s.Away(j) }
	push.New(push.Config{MaxPerUser: s.cfg.Push.MaxPerUser, IncludeBody: s.cfg.Push.IncludeBody}, st, away, log.WithField("mod", "push")).Register(s.bus)
	return nil
}

// preAuthRegister is c2s's hook for XEP-0077 before authentication.
func (s *Server) preAuthRegister(ctx context.Context, ip, host string, iq *stanza.Stanza) *stanza.Stanza {
	return s.mob.reg.PreAuth(ctx, ip, host, iq)
}

// closeMobile closes the push database (after the last ingress closed).
func (s *Server) closeMobile() error {
	if s.mob.pushStore == nil {
		return nil
	}
	return s.mob.pushStore.Close()
}
