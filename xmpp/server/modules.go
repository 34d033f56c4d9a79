package server

import (
	"gatehouse/xmpp/mod/blocking"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/mod/message"
	"gatehouse/xmpp/mod/presence"
	"gatehouse/xmpp/mod/roster"
	"gatehouse/xmpp/stanza"
)

// registerModules attaches the feature modules to the bus. Order does not
// matter: handlers carry their own priorities.
func (s *Server) registerModules() {
	log := s.log.WithField("component", "mod")
	message.New(s.db, s.cfg.Offline.MaxPerUser, log.WithField("mod", "message"), nil).Register(s.bus)
	r := roster.New(s.db, log.WithField("mod", "roster"))
	r.Register(s.bus)
	s.rosterMod = r
	p := presence.New(r, log.WithField("mod", "presence"))
	p.Register(s.bus)
	s.registerPrivileges(r) // XEP-0356 for transports (transports.go)
	b := blocking.New(s.db, log.WithField("mod", "blocking"))
	b.Register(s.bus)
	p.SetBlocked(b.Blocks)
	s.mam = mam.New(s.cfg.MAM, s.cfg.DataDir, s.db, log.WithField("mod", "mam"))
	s.mam.Register(s.bus)
	s.registerMUC() // group chat service (muc.go)
	// PEP, pubsub.<domain> and upload.<domain> (services.go).
	s.registerServices()
	s.registerServiceModules()
}

// streamFeatures are the post-bind stream features modules contribute.
func (s *Server) streamFeatures() []*stanza.Element {
	return roster.StreamFeatures()
}
