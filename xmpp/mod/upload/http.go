package upload

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// escape makes a file name one URL path segment.
func escape(name string) string { return url.PathEscape(name) }

// inline lists the types browsers may show in place; anything else is
// served as an attachment so that an uploaded HTML page never runs in the
// upload server's origin.
var inline = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"video/mp4": true, "video/webm": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/mp4": true, "audio/aac": true, "audio/webm": true, "text/plain": true,
}

// Handler serves PUT (the slot's upload), GET and HEAD of files and the
// CORS preflight for web clients, at "/<token>/<name>" relative to the
// base URL (so mount it where the public URL's path points).
func (m *Module) Handler() http.Handler {
	return http.HandlerFunc(m.serveHTTP)
}

func (m *Module) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	parts = parts[len(parts)-2:] // the base URL may have a path of its own
	token := parts[0]
	name, err := url.PathUnescape(parts[1])
	if err != nil || !validToken(token) {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		m.put(w, r, token, name)
	case http.MethodGet, http.MethodHead:
		m.get(w, r, token, name)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (m *Module) put(w http.ResponseWriter, r *http.Request, token, name string) {
	s, err := m.claim(token, name)
	switch {
	case errors.Is(err, errNotFound):
		// A finished upload cannot be overwritten.
		if f, _, err := m.open(token, name); err == nil {
			_ = f.Close()
			http.Error(w, "this file was uploaded already", http.StatusConflict)
			return
		}
		http.Error(w, "no such upload slot", http.StatusForbidden)
		return
	case errors.Is(err, errExpired):
		http.Error(w, "the upload slot expired; ask for a new one", http.StatusForbidden)
		return
	case errors.Is(err, errBusy):
		http.Error(w, "an upload to this slot is in progress", http.StatusConflict)
		return
	}
	if r.ContentLength != s.Size {
		m.release(s, false)
		http.Error(w, "Content-Length must be "+strconv.FormatInt(s.Size, 10)+" bytes, the size the slot was requested for", http.StatusBadRequest)
		return
	}
	err = m.store(r.Context(), s, http.MaxBytesReader(w, r.Body, s.Size))
	if err != nil {
		m.release(s, false)
		var ref *Refusal
		switch {
		case errors.As(err, &ref):
			m.log.WithField("owner", s.Owner.String()).WithField("file", s.Filename).Info("upload refused by policy: " + ref.Reason)
			http.Error(w, ref.Reason, http.StatusForbidden)
		case errors.Is(err, errSize):
			http.Error(w, "the body is not the size the slot was requested for", http.StatusBadRequest)
		default:
			m.log.WithError(err).WithField("owner", s.Owner.String()).Error("upload failed")
			http.Error(w, "the upload could not be stored", http.StatusInternalServerError)
		}
		return
	}
	m.release(s, true)
	m.log.WithField("owner", s.Owner.String()).WithField("size", s.Size).Debug("file uploaded")
	w.WriteHeader(http.StatusCreated)
}

func (m *Module) get(w http.ResponseWriter, r *http.Request, token, name string) {
	f, md, err := m.open(token, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	ctype := md.ContentType
	if mt, _, err := mime.ParseMediaType(ctype); err != nil || ctype == "" {
		ctype = "application/octet-stream"
	} else if !inline[mt] {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": md.Filename}))
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, md.Filename, md.Created, f)
}
