package server

import (
	"gatehouse/xmpp/mod/disco"
	"gatehouse/xmpp/mod/entitytime"
	"gatehouse/xmpp/mod/ping"
	"gatehouse/xmpp/mod/private"
	"gatehouse/xmpp/mod/vcard"
	"gatehouse/xmpp/mod/version"
)

// registerServiceModules attaches the server-feature modules (disco,
// version, vcard, private storage, entity time, ping, blocking).
func (s *Server) registerServiceModules() {
	log := s.log.WithField("component", "mod")
	disco.New(s.db, log.WithField("mod", "disco")).Register(s.bus)
	version.New(s.cfg.Server.Name, Version, s.cfg.Server.HideOS).Register(s.bus)
	vcard.New(s.db, s.cfg.Server.Name, vcard.DefaultMaxBytes, log.WithField("mod", "vcard")).Register(s.bus)
	private.New(s.db, private.DefaultMaxBytes, log.WithField("mod", "private")).Register(s.bus)
	entitytime.New(nil).Register(s.bus)
	ping.New().Register(s.bus)
}
