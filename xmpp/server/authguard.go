package server

import (
	"context"
	"fmt"
	"time"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/auth/throttle"
	"gatehouse/xmpp/c2s"
)

// authGuard adapts the throttle to c2s: per address before an exchange
// (c2s asks Wait), per account when the credentials are looked up.
type authGuard struct{ t *throttle.Throttle }

func (g authGuard) Wait(ip string) time.Duration { return g.t.Wait(throttle.IPKey(ip)) }

func (g authGuard) Failed(ip, user string) {
	keys := []string{throttle.IPKey(ip)}
	if user != "" {
		keys = append(keys, throttle.AccountKey(user))
	}
	g.t.Fail(keys...)
}

func (g authGuard) Succeeded(_, user string) { g.t.Succeed(user) }

// setupThrottle creates the back-off from auth.throttle (nil when off).
func (s *Server) setupThrottle() {
	tc := s.cfg.Auth.Throttle
	if tc.Free <= 0 {
		return
	}
	s.throttle = throttle.New(throttle.Config{Free: tc.Free, Base: tc.Base.D(), Max: tc.Max.D(), Forget: tc.Forget.D()}, nil)
	s.adm.api.Handle("GET /v1/auth/blocked", func(context.Context, *admin.Request) (any, error) {
		return s.throttle.List(), nil
	})
	s.adm.api.Handle("POST /v1/auth/unblock", func(_ context.Context, r *admin.Request) (any, error) {
		var req struct {
			Key string `json:"key"`
		}
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		if !s.throttle.Clear(req.Key) {
			return nil, fmt.Errorf("%w: %q has no failed logins recorded (keys look like ip:192.0.2.7 or account:alice)", admin.ErrNotFound, req.Key)
		}
		return map[string]string{"unblocked": req.Key}, nil
	})
}

// c2sThrottle is what c2s gets: nil when the back-off is off.
func (s *Server) c2sThrottle() c2s.AuthThrottle {
	if s.throttle == nil {
		return nil
	}
	return authGuard{s.throttle}
}

// accountWait refuses a lookup for an account that is backing off.
func (s *Server) accountWait(user string) error {
	if s.throttle == nil {
		return nil
	}
	if w := s.throttle.Wait(throttle.AccountKey(user)); w > 0 {
		return auth.NewFailure("temporary-auth-failure", fmt.Sprintf("too many failed logins for this account; try again in %s", w.Round(time.Second)), nil)
	}
	return nil
}
