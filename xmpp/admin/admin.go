// Package admin is the admin API of a running server: JSON over HTTP on a
// unix socket that only the server's own user (or root) may use, and
// optionally on a loopback TCP address for automation holding a bearer
// token. The gatehouse CLI is its client (Client).
//
// Subsystems register their endpoints with Handle; every call that changes
// something is reported to the Auditor before it is answered, so admin
// actions end up in the compliance archive.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Errors a Handler returns to choose the HTTP status; wrap them with %w.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrConflict   = errors.New("conflict")
)

// maxBody bounds a request body: admin requests are small JSON objects.
const maxBody = 1 << 20

// Request is one admin call.
type Request struct {
	Method string
	Path   string
	// Caller names who called: "uid 1000" on the socket, "token" on HTTP.
	Caller string
	body   []byte
	http   *http.Request
}

// Decode unmarshals the JSON body into v; an empty body leaves v alone.
func (r *Request) Decode(v any) error {
	if len(r.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	return nil
}

// PathValue returns a wildcard of the route pattern ("{jid}").
func (r *Request) PathValue(name string) string { return r.http.PathValue(name) }

// Query returns a URL query parameter.
func (r *Request) Query(name string) string { return r.http.URL.Query().Get(name) }

// Handler answers a call; the result is sent as JSON.
type Handler func(ctx context.Context, r *Request) (any, error)

// Auditor records admin actions (the compliance archive implements it).
type Auditor interface {
	AdminAction(ctx context.Context, caller, action, detail string) error
}

// Server serves the admin API.
type Server struct {
	log     logrus.FieldLogger
	mux     *http.ServeMux
	auditMu sync.RWMutex
	auditor Auditor

	mu    sync.Mutex
	srvs  []*http.Server
	lns   []net.Listener
	token []byte
}

// New returns a server with no endpoints.
func New(log logrus.FieldLogger) *Server {
	return &Server{log: log, mux: http.NewServeMux()}
}

// SetAuditor sets where admin actions are recorded.
func (s *Server) SetAuditor(a Auditor) {
	s.auditMu.Lock()
	s.auditor = a
	s.auditMu.Unlock()
}

// Handle registers h for pattern, a net/http pattern with a method such
// as "GET /v1/sessions" or "POST /v1/sessions/{jid}/kick". Calls with a
// method other than GET are audited.
func (s *Server) Handle(pattern string, h Handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, hr *http.Request) {
		s.serve(w, hr, h)
	})
}

type ctxKey struct{}

func (s *Server) serve(w http.ResponseWriter, hr *http.Request, h Handler) {
	caller, _ := hr.Context().Value(ctxKey{}).(string)
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxBody+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "reading the request: "+err.Error())
		return
	}
	if len(body) > maxBody {
		writeErr(w, http.StatusRequestEntityTooLarge, "request body over 1 MiB")
		return
	}
	r := &Request{Method: hr.Method, Path: hr.URL.Path, Caller: caller, body: body, http: hr}
	log := s.log.WithFields(logrus.Fields{"caller": caller, "method": r.Method, "path": r.Path})
	if r.Method != http.MethodGet {
		// Recorded before it happens: an action the archive cannot
		// record is not carried out.
		if err := s.audit(hr.Context(), caller, r.Method+" "+r.Path, string(body)); err != nil {
			log.WithError(err).Error("admin action refused: it could not be audited")
			writeErr(w, http.StatusServiceUnavailable, "the action could not be recorded in the audit log: "+err.Error())
			return
		}
		log.Info("admin action")
	}
	res, err := h(hr.Context(), r)
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrBadRequest):
			status = http.StatusBadRequest
		case errors.Is(err, ErrConflict):
			status = http.StatusConflict
		default:
			log.WithError(err).Warn("admin call failed")
		}
		writeErr(w, status, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
}

func (s *Server) audit(ctx context.Context, caller, action, detail string) error {
	s.auditMu.RLock()
	a := s.auditor
	s.auditMu.RUnlock()
	if a == nil {
		return nil
	}
	return a.AdminAction(ctx, caller, action, detail)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// ErrInUse: another live server answers on the socket.
var ErrInUse = errors.New("admin socket in use by a running server")

// ListenUnix binds the socket at path with mode 0600. A stale socket left
// by a crashed server is replaced; a live one is an error (ErrInUse), so
// two servers never share a data directory unnoticed.
func (s *Server) ListenUnix(path string) (net.Listener, error) {
	addr, closeDir, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer closeDir()
	if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("admin: %s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin: removing stale socket: %w", err)
	}
	// No umask games: the umask is process-wide and would leak into files
	// other goroutines create meanwhile (a binary built without its x
	// bits). The usual umask already leaves others without write
	// permission, which connecting needs; the chmod below narrows it to
	// 0600, and unixAuth checks every caller's uid regardless.
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: socket mode: %w", err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // addr may be a /proc alias; remove the real path ourselves
	wrapped := &unlinkListener{UnixListener: ul, path: path}
	s.serveOn(wrapped, s.unixAuth)
	return wrapped, nil
}

// unlinkListener removes the socket file when closed.
type unlinkListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unlinkListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// Addr names the socket by its real path.
func (l *unlinkListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// maxSunPath is the room for a socket path in sockaddr_un (108 bytes on
// Linux, with the terminating NUL).
const maxSunPath = 107

// shortPath returns an address for path that fits sockaddr_un: path itself
// when short enough, else /proc/self/fd/N/<name> through an open handle on
// the directory (deep data directories are common in tests and
// containers). The returned func closes that handle once bound or dialled.
func shortPath(path string) (string, func(), error) {
	if len(path) <= maxSunPath {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, fmt.Errorf("admin: socket directory: %w", err)
	}
	alias := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(alias) > maxSunPath {
		_ = dir.Close()
		return "", nil, fmt.Errorf("admin: socket name %q is too long", filepath.Base(path))
	}
	return alias, func() { _ = dir.Close() }, nil
}

// ListenHTTP serves the API on a loopback TCP address to callers sending
// "Authorization: Bearer <token>".
func (s *Server) ListenHTTP(addr string, token []byte) (net.Listener, error) {
	if len(token) < 32 {
		return nil, fmt.Errorf("admin: the HTTP token must be at least 32 characters")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: %s is not a loopback address", addr)
	}
	s.mu.Lock()
	s.token = append([]byte(nil), token...)
	s.mu.Unlock()
	s.serveOn(ln, s.tokenAuth)
	return ln, nil
}

// serveOn serves the mux on ln behind auth.
func (s *Server) serveOn(ln net.Listener, auth func(http.Handler) http.Handler) {
	srv := &http.Server{
		Handler:           auth(s.mux),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: nil,
	}
	s.mu.Lock()
	s.srvs = append(s.srvs, srv)
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.WithError(err).Error("admin API stopped")
		}
	}()
}

type connKey struct{}

// unixAuth serves only peers running as the server's user or root
// (SO_PEERCRED), whatever the socket's mode says.
func (s *Server) unixAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uc, ok := r.Context().Value(connKey{}).(*net.UnixConn)
		if !ok {
			writeErr(w, http.StatusForbidden, "not a unix socket peer")
			return
		}
		uid, err := peerUID(uc)
		if err != nil {
			writeErr(w, http.StatusForbidden, "peer credentials: "+err.Error())
			return
		}
		if uid != 0 && uid != os.Geteuid() {
			s.log.WithField("uid", uid).Warn("admin API: refused a caller running as another user")
			writeErr(w, http.StatusForbidden, "only the server's user or root may use the admin API")
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, fmt.Sprintf("uid %d", uid))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func peerUID(uc *net.UnixConn) (int, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *syscall.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

func (s *Server) tokenAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		token := s.token
		s.mu.Unlock()
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
			writeErr(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, "token@"+r.RemoteAddr)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Shutdown stops serving; calls in progress get until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srvs := s.srvs
	s.srvs, s.lns = nil, nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range srvs {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
