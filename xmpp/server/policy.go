package server

import (
	"context"
	"fmt"

	"gatehouse/policy"
	"gatehouse/xmpp/router"
)

// policyState is the boundary policy of a server: the Gate, which holds
// the policy in force and swaps it on reload.
type policyState struct {
	gate *policy.Gate
}

// PolicyOptions returns the compile options for this configuration (also
// used by `gatehouse policy check` and `test`).
func PolicyOptions(hosts []string, clamd string) policy.Options {
	return policy.Options{Hosts: hosts, Scanner: clamd != ""}
}

// setupPolicy loads the boundary policy. Called from New before the
// archive opens: the archive's boundary wraps policyBoundary. The Gate is
// also installed as the router's boundary right away, so that policy holds
// even where no archive is configured; openArchive replaces it with the
// recording wrapper.
func (s *Server) setupPolicy(ctx context.Context) error {
	pc := s.cfg.Policy
	var scanner policy.Scanner
	if pc.Clamd != "" {
		network, addr, err := policy.ParseClamdAddr(pc.Clamd)
		if err != nil {
			return fmt.Errorf("server: policy.clamd: %w", err)
		}
		scanner = &policy.Clamd{Network: network, Addr: addr, Timeout: pc.ClamdTimeout.D()}
	}
	p, err := s.readPolicy()
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	log := s.log.WithField("component", "policy")
	gate, err := policy.NewGate(ctx, p, policy.GateOptions{
		Hosts:            s.cfg.Hosts,
		Directory:        s.db,
		Forwarder:        s.router,
		Scanner:          scanner,
		ScanFailOpen:     pc.OnScanFailure == "allow",
		ScanMaxBytes:     pc.ScanMaxBytes,
		DirectoryRefresh: pc.DirectoryRefresh.D(),
		MaxTransfers:     pc.MaxTransfers,
		Log:              log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.pol.gate = gate
	s.router.SetBoundary(gate)
	s.logPolicy(ctx, "policy loaded")
	return nil
}

// readPolicy compiles the configured policy file; nil without one.
func (s *Server) readPolicy() (*policy.Policy, error) {
	if s.cfg.Policy.File == "" {
		return nil, nil
	}
	return policy.Load(s.cfg.Policy.File, PolicyOptions(s.cfg.Hosts, s.cfg.Policy.Clamd))
}

func (s *Server) logPolicy(ctx context.Context, msg string) {
	p := s.pol.gate.Policy()
	log := s.log.WithField("component", "policy")
	log.WithField("file", s.cfg.Policy.File).WithField("version", p.Version()).Info(msg + ": " + p.Summary())
	if missing, err := policy.MissingGroups(ctx, p, s.db); err == nil && len(missing) > 0 {
		log.WithField("groups", missing).Warn("the policy names groups that do not exist yet; their rules match nobody until they are created")
	}
}

// policyBoundary is the boundary that decides crossings; the archive
// records its decisions.
func (s *Server) policyBoundary() router.Boundary { return s.pol.gate }

// reloadPolicy re-reads the policy file on SIGHUP. The new file is
// compiled and its groups loaded before it replaces the old policy, so a
// bad file changes nothing. The file's path is the one the server started
// with: changing policy.file or policy.clamd needs a restart.
func (s *Server) reloadPolicy(ctx context.Context) error {
	if s.cfg.Policy.File == "" {
		return nil
	}
	p, err := s.readPolicy()
	if err != nil {
		return err
	}
	if err := s.pol.gate.Swap(ctx, p); err != nil {
		return err
	}
	s.logPolicy(ctx, "policy reloaded")
	return nil
}

// PolicyVersion returns the version of the policy in force ("none"
// without a policy file).
func (s *Server) PolicyVersion() string { return s.pol.gate.Policy().Version() }

// ReloadPolicy re-reads the policy file as SIGHUP does and returns why it
// was refused, if it was.
func (s *Server) ReloadPolicy(ctx context.Context) error { return s.reloadPolicy(ctx) }
