package server

import (
	"mellium.im/xmpp/jid"

	"context"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/mod/muc"
)

// registerMUC opens the group chat service and makes it the bus's internal
// component for its domain (local zone). Like the message archive, a
// service that cannot open its databases is logged and left out rather
// than stopping the server: stanzas to the group chat domain then bounce,
// and everything else works.
func (s *Server) registerMUC() {
	if !s.cfg.MUC.Enabled {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	domain := s.cfg.MUC.ServiceDomain(s.cfg.Hosts)
	log := s.log.WithField("component", "mod").WithField("mod", "muc")
	svc, err := muc.Open(ctx, muc.Options{Config: s.cfg.MUC, Domain: domain, DataDir: s.cfg.DataDir, Log: log})
	if err != nil {
		log.WithError(err).Error("group chat unavailable")
		return
	}
	svc.Register(s.bus)
	s.muc = svc
	log.WithFields(logrus.Fields{"domain": domain, "rooms": len(svc.Rooms())}).Info("group chat service ready")
}

// MUC returns the group chat service, or nil when it is off.
func (s *Server) MUC() *muc.Service { return s.muc }

// closeMUC closes the group chat databases; called from Run once no
// ingress is left.
func (s *Server) closeMUC() error {
	if s.muc == nil {
		return nil
	}
	return s.muc.Close()
}

// occupantAccount names the local account behind a room nick, for the
// boundary: a room's copy for an outside occupant is said by a user.
func (s *Server) occupantAccount(j jid.JID) (jid.JID, bool) {
	if s.muc == nil {
		return jid.JID{}, false
	}
	return s.muc.RealJID(j)
}
