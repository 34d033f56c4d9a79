package server

// registerServiceModules attaches the server-feature modules (disco,
// version, vcard, private storage, entity time, ping, blocking).
func (s *Server) registerServiceModules() {
}
