package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"gatehouse/logging/archive"
	"gatehouse/policy"
	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/upload"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// policyState is the boundary policy of a server: the Gate, which holds
// the policy in force and swaps it on reload.
type policyState struct {
	gate   *policy.Gate
	review *reviewState // messages held for review (policy_review.go)
}

// PolicyOptions returns the compile options for this configuration (also
// used by `gatehouse policy check` and `test`).
func PolicyOptions(cfg *config.Config) policy.Options {
	return policy.Options{Hosts: cfg.Hosts, Scanner: cfg.Policy.Clamd != "", LinkFetcher: cfg.Policy.ScanLinks}
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
		Attribute:        s.occupantAccount,
		Fetcher:          s.linkFetcher(),
		Log:              log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.pol.gate = gate
	s.router.SetBoundary(gate)
	if s.svc.upload != nil {
		s.svc.upload.SetChecker(uploadChecker{gate: gate})
	}
	s.enforceBarriers()
	if s.adm.api != nil {
		s.adm.api.Handle("POST /v1/policy/reload", s.adminPolicyReload)
	}
	if err := s.setupReview(ctx); err != nil {
		return err
	}
	s.logPolicy(ctx, "policy loaded")
	return nil
}

// readPolicy compiles the configured policy file; nil without one.
func (s *Server) readPolicy() (*policy.Policy, error) {
	if s.cfg.Policy.File == "" {
		return nil, nil
	}
	return policy.Load(s.cfg.Policy.File, PolicyOptions(s.cfg))
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
	old := s.PolicyVersion()
	p, err := s.readPolicy()
	if err == nil {
		err = s.pol.gate.Swap(ctx, p)
	}
	if err != nil {
		s.recordReload(ctx, "policy.reload_refused", old, map[string]string{"file": s.cfg.Policy.File, "error": err.Error()})
		return err
	}
	s.logPolicy(ctx, "policy reloaded")
	s.recordReload(ctx, "policy.reloaded", p.Version(), map[string]string{"file": s.cfg.Policy.File, "previous": old})
	return nil
}

// recordReload notes a policy reload, or its refusal, in the compliance
// archive: the rows after it carry the version in force. A failure to
// record is logged; the reload itself has already happened (or not).
func (s *Server) recordReload(ctx context.Context, action, version string, detail map[string]string) {
	a := s.Archive()
	if a == nil {
		return
	}
	b, err := json.Marshal(detail)
	if err == nil {
		_, err = a.Append(ctx, &archive.PolicyAction{Action: action, PolicyVersion: version, Detail: string(b)})
	}
	if err != nil {
		s.log.WithField("component", "policy").WithError(err).Error("compliance archive: " + action + " not recorded")
	}
}

// PolicyReloadResult is the answer of POST /v1/policy/reload.
type PolicyReloadResult struct {
	File    string `json:"file"`
	Version string `json:"version"`
	Summary string `json:"summary"`
}

// adminPolicyReload re-reads the policy file for `gatehouse policy
// reload`, and says truthfully whether it took effect.
func (s *Server) adminPolicyReload(ctx context.Context, _ *admin.Request) (any, error) {
	if s.cfg.Policy.File == "" {
		return nil, fmt.Errorf("%w: no policy file is configured (policy.file)", admin.ErrBadRequest)
	}
	if err := s.reloadPolicy(ctx); err != nil {
		return nil, fmt.Errorf("%w: not reloaded, version %s stays in force: %v", admin.ErrBadRequest, s.PolicyVersion(), err)
	}
	p := s.pol.gate.Policy()
	return PolicyReloadResult{File: s.cfg.Policy.File, Version: p.Version(), Summary: p.Summary()}, nil
}

// PolicyVersion returns the version of the policy in force ("none"
// without a policy file).
func (s *Server) PolicyVersion() string { return s.pol.gate.Policy().Version() }

// ReloadPolicy re-reads the policy file as SIGHUP does and returns why it
// was refused, if it was.
func (s *Server) ReloadPolicy(ctx context.Context) error { return s.reloadPolicy(ctx) }

// uploadChecker lets the policy judge uploads to the built-in upload
// service: the file rules at slot time, the virus scan when the file is
// complete (docs/policy.md#uploads).
type uploadChecker struct{ gate *policy.Gate }

func fileUpload(s upload.Slot) policy.FileUpload {
	return policy.FileUpload{Owner: s.Owner, Name: s.Filename, MediaType: s.ContentType, Size: s.Size, URL: s.URL}
}

// CheckSlot implements upload.Checker.
func (c uploadChecker) CheckSlot(ctx context.Context, s upload.Slot) error {
	if d := c.gate.CheckUploadSlot(ctx, fileUpload(s)); d.Verdict == router.Deny {
		return &upload.Refusal{Reason: d.Text}
	}
	return nil
}

// CheckFile implements upload.Checker.
func (c uploadChecker) CheckFile(ctx context.Context, s upload.Slot, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("server: policy check of an upload: %w", err)
	}
	defer f.Close()
	if d := c.gate.CheckUploadedFile(ctx, fileUpload(s), f); d.Verdict == router.Deny {
		return &upload.Refusal{Reason: d.Text}
	}
	return nil
}

// barrierHookPriority puts the information barriers before every other
// handler of stanzas reaching the local zone, the archive's recorder of
// internal traffic included: a stanza a barrier refuses is seen by no
// module and recorded once, as refused.
const barrierHookPriority = 1 << 21

// enforceBarriers applies the information barriers to traffic between
// local accounts. The router hands only border crossings to the boundary,
// so internal stanzas are caught where they reach the local zone. The
// hooks stay registered; a policy without barriers costs one check.
func (s *Server) enforceBarriers() {
	for _, k := range []stanza.Kind{stanza.KindMessage, stanza.KindPresence, stanza.KindIQ} {
		for _, addr := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
			s.bus.On(hook.Event{Dir: hook.In, Kind: k, Addr: addr}, barrierHookPriority, s.barrier)
		}
	}
}

// barrier decides one internal stanza; true (consumed) when refused.
func (s *Server) barrier(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	// Stanzas from outside were decided at the boundary; bounces and
	// notices are not new traffic; errors answer what was allowed.
	if env.Src.Zone != router.ZoneLocal || env.Flags&router.BoundaryDone != 0 || st.Type == "error" ||
		!s.pol.gate.Policy().HasBarriers() {
		return false
	}
	dec, err := s.pol.gate.Cross(ctx, env)
	if err != nil || dec.Rule == policy.DefaultRule {
		return false
	}
	if !s.recordBarrier(ctx, env, dec) && dec.Verdict != router.Deny {
		s.bus.Bounce(ctx, env, stanza.ResourceConstraint, "the message could not be recorded; try again later")
		return true
	}
	if dec.Verdict == router.Deny {
		s.bus.Bounce(ctx, env, dec.Condition, dec.Text)
		return true
	}
	return false
}

// recordBarrier writes a barrier's decision to the compliance archive as a
// policy row ("policy.barrier"). It reports false when the row could not
// be written and the archive fails closed.
func (s *Server) recordBarrier(ctx context.Context, env *router.Envelope, dec router.Decision) bool {
	a := s.Archive()
	if a == nil {
		return true
	}
	st := env.Stanza
	verdict := "allow"
	if dec.Verdict == router.Deny {
		verdict = "deny"
	}
	detail, err := json.Marshal(map[string]string{"verdict": verdict, "kind": st.Kind.String(), "type": st.Type, "id": st.ID})
	if err == nil {
		_, err = a.Append(ctx, &archive.PolicyAction{Action: "policy.barrier", Rule: dec.Rule, PolicyVersion: dec.PolicyVersion,
			Account: st.From.Bare().String(), Peer: st.To.Bare().String(), Detail: string(detail)})
	}
	if err == nil {
		return true
	}
	s.log.WithField("component", "policy").WithError(err).WithField("rule", dec.Rule).Error("compliance archive: barrier decision not recorded")
	return s.cfg.Archive.OnArchiveFailure == config.ArchiveAllow
}

// linkFetcher fetches files behind outside links for scanning when
// policy.scan_links is on (nil otherwise).
func (s *Server) linkFetcher() policy.LinkFetcher {
	pc := s.cfg.Policy
	if !pc.ScanLinks {
		return nil
	}
	return policy.NewHTTPFetcher(int64(pc.ScanMaxBytes), pc.ClamdTimeout.D(), pc.ScanLinksPrivate)
}
