package server

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/logging/archive"
	"gatehouse/policy/review"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Messages held for review (policy action hold, docs/policy.md#hold-and-
// review). The router knows only allow and deny, so a held message is
// taken before it is routed: a hook on outbound messages from local
// sessions asks the Gate whether a hold rule keeps it, and if so stores it
// in the review queue (review.db). `gatehouse review release|reject`
// records a decision there; the server picks decisions up every
// policy.review_poll and carries them out: a released message is routed
// (it crosses the boundary then, where hold rules act as flags, and is
// archived), a rejected one is bounced to its sender.

// holdHookPriority runs the hold check after blocking (1000) and before
// MAM (500) and carbons: a held message is neither archived in the
// sender's history nor copied to their other devices.
const holdHookPriority = 800

// reviewState is the review queue of a running server.
type reviewState struct {
	store *review.Store
	stop  chan struct{}
	done  chan struct{}
}

// setupReview opens the review queue and installs the hold hook. Only
// with a policy file: without one nothing can hold.
func (s *Server) setupReview(ctx context.Context) error {
	if s.cfg.Policy.File == "" {
		return nil
	}
	store, err := review.Open(ctx, filepath.Join(s.cfg.DataDir, review.FileName))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.pol.review = &reviewState{store: store, stop: make(chan struct{}), done: make(chan struct{})}
	for _, a := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
		s.bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindMessage, Addr: a}, holdHookPriority, s.holdOutbound)
	}
	return nil
}

// holdOutbound keeps a message a hold rule applies to; true (consumed)
// when it was held, or refused because it could not be.
func (s *Server) holdOutbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.Type == "error" || !s.pol.gate.Policy().HasHold() {
		return false
	}
	domain := st.To.Domainpart()
	probe := *env
	probe.Dst = router.Endpoint{Zone: s.zones.ZoneOf(domain), Domain: domain}
	h, held := s.pol.gate.CheckHold(ctx, &probe)
	if !held {
		return false
	}
	log := s.log.WithField("component", "policy").WithField("rule", h.Rule)
	raw := string(st.AppendXML(nil, stanza.NSClient))
	id, err := s.pol.review.store.Add(ctx, review.Item{Account: st.From.Bare().String(), Peer: st.To.Bare().String(),
		Rule: h.Rule, Rules: h.Rules, PolicyVersion: h.PolicyVersion, Body: st.Body(), Stanza: raw})
	if err == nil {
		// The archive keeps the held message itself: it may never cross.
		err = s.recordPolicy(ctx, "policy.hold", h.Rule, h.PolicyVersion, st, map[string]any{"review_id": id, "rules": h.Rules, "stanza": raw})
		if err != nil {
			_ = s.pol.review.store.Decide(ctx, id, false, "server", "not recorded in the compliance archive")
			_ = s.pol.review.store.Finish(ctx, id, "failed", err.Error())
		}
	}
	if err != nil {
		log.WithError(err).Error("policy: a message to hold for review could not be stored; refused")
		s.router.Bounce(ctx, env, stanza.ResourceConstraint, "the message could not be held for review; try again later")
		return true
	}
	log.WithField("review_id", id).WithField("from", st.From.String()).WithField("to", st.To.String()).Info("message held for review")
	s.tellSender(ctx, st.From, h.Rule, h.PolicyVersion, id, "held",
		fmt.Sprintf("Your message to %s is held for review (rule %s, #%d). You will be told when a reviewer decides.", st.To.Bare(), h.Rule, id))
	s.pol.gate.NotifyHold(ctx, &probe, fmt.Sprintf("Held for review as #%d: gatehouse review show %d, then gatehouse review release %d or reject %d.", id, id, id, id))
	return true
}

// tellSender sends the sender of a held message a notice from the server.
func (s *Server) tellSender(ctx context.Context, to jid.JID, rule, version string, id int64, action, text string) {
	server, err := jid.New("", to.Domainpart(), "")
	if err != nil {
		return
	}
	n := &stanza.Stanza{Kind: stanza.KindMessage, Type: "normal", From: server, To: to}
	n.Append(stanza.NewElement("", "body").AppendText(text),
		stanza.NewElement("urn:gatehouse:policy:0", "policy", "rule", rule, "action", action, "version", version, "review", strconv.FormatInt(id, 10)))
	env := &router.Envelope{Stanza: n, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: server.Domainpart()}, Flags: router.BoundaryDone}
	if err := s.router.Forward(ctx, env); err != nil {
		s.log.WithField("component", "policy").WithError(err).WithField("to", to.String()).Warn("policy: review notice not delivered")
	}
}

// recordPolicy appends a policy row to the compliance archive (when open).
func (s *Server) recordPolicy(ctx context.Context, action, rule, version string, st *stanza.Stanza, detail map[string]any) error {
	a := s.Archive()
	if a == nil {
		return nil
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	_, err = a.Append(ctx, &archive.PolicyAction{Action: action, Rule: rule, PolicyVersion: version,
		Account: st.From.Bare().String(), Peer: st.To.Bare().String(), Detail: string(b)})
	return err
}

// serveReview carries out reviewers' decisions and the review timeout
// until closeReview; called from Run as a goroutine.
func (s *Server) serveReview() {
	rs := s.pol.review
	if rs == nil {
		return
	}
	defer close(rs.done)
	t := time.NewTicker(s.cfg.Policy.ReviewPoll.D())
	defer t.Stop()
	for {
		select {
		case <-rs.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := s.reviewRound(ctx); err != nil {
				s.log.WithField("component", "policy").WithError(err).Error("policy: review queue")
			}
			cancel()
		}
	}
}

// closeReview stops serveReview and closes the queue; called from Run
// before the archive closes.
func (s *Server) closeReview() {
	rs := s.pol.review
	if rs == nil {
		return
	}
	select {
	case <-rs.stop:
		return
	default:
	}
	close(rs.stop)
	<-rs.done // Run started serveReview
	_ = rs.store.Close()
}

// reviewRound applies the timeout and carries out what was decided.
func (s *Server) reviewRound(ctx context.Context) error {
	rs := s.pol.review
	pc := s.cfg.Policy
	if _, err := rs.store.Expire(ctx, time.Now().Add(-pc.ReviewTimeout.D()), pc.ReviewTimeoutAction == "release"); err != nil {
		return err
	}
	todo, err := rs.store.Todo(ctx)
	if err != nil {
		return err
	}
	for _, it := range todo {
		outcome, note := s.carryOut(ctx, it)
		if err := rs.store.Finish(ctx, it.ID, outcome, note); err != nil {
			return err
		}
	}
	return nil
}

// carryOut delivers a released item or bounces a rejected one, and
// records the decision in the archive.
func (s *Server) carryOut(ctx context.Context, it review.Item) (outcome, note string) {
	st, err := parseHeld(it.Stanza)
	if err != nil {
		return "failed", "the held stanza does not parse: " + err.Error()
	}
	log := s.log.WithField("component", "policy").WithField("review_id", it.ID).WithField("decided_by", it.DecidedBy)
	detail := map[string]any{"review_id": it.ID, "decided_by": it.DecidedBy}
	if it.Note != "" {
		detail["note"] = it.Note
	}
	action := "policy.review." + string(it.Status)
	if err := s.recordPolicy(ctx, action, it.Rule, it.PolicyVersion, st, detail); err != nil {
		// Not recorded: try again next round.
		log.WithError(err).Error("policy: review decision not recorded in the compliance archive; will retry")
		return "", ""
	}
	env := &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: st.From.Domainpart()}}
	if it.Status == review.Rejected {
		text := fmt.Sprintf("rejected by a reviewer (rule %s)", it.Rule)
		if it.DecidedBy == "timeout" {
			text = fmt.Sprintf("no reviewer released it in time (rule %s)", it.Rule)
		}
		if it.Note != "" {
			text += ": " + it.Note
		}
		s.router.Bounce(ctx, env, stanza.PolicyViolation, text)
		log.Info("held message rejected")
		return "bounced", text
	}
	err = s.router.Forward(ctx, env)
	switch {
	case errors.Is(err, router.ErrDenied):
		log.Info("held message released but denied by the policy now in force")
		return "denied", "the policy in force refused it when it was released"
	case err != nil:
		log.WithError(err).Warn("held message released but not delivered")
		return "failed", err.Error()
	}
	log.Info("held message released and delivered")
	s.tellSender(ctx, st.From, it.Rule, it.PolicyVersion, it.ID, "released",
		fmt.Sprintf("Your message to %s (held as #%d) was released by a reviewer and delivered.", st.To.Bare(), it.ID))
	return "delivered", ""
}

func parseHeld(raw string) (*stanza.Stanza, error) {
	d := xml.NewDecoder(strings.NewReader(raw))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.Parse(d, start)
		}
	}
}
