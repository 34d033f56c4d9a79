package websocket

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
)

// RelWebSocket is the XEP-0156 link relation of a WebSocket endpoint.
const RelWebSocket = "urn:xmpp:alt-connections:websocket"

// HostMeta serves /.well-known/host-meta (XRD, RFC 6415) and
// /.well-known/host-meta.json (JRD) listing the WebSocket endpoint
// (XEP-0156 §3). url returns the endpoint's public address for a
// request; publicURL set in the configuration wins over one derived from
// the request. Only hosted domains are answered, so the file cannot be
// used to make this server vouch for another domain.
func HostMeta(hosted func(host string) bool, url func(r *http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		host := r.Host
		if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
			host = h
		}
		if !hosted(strings.ToLower(host)) {
			http.NotFound(w, r)
			return
		}
		href := url(r)
		// Web clients on other origins read this (XEP-0156 §3.2).
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if strings.HasSuffix(r.URL.Path, ".json") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"links": []map[string]string{{"rel": RelWebSocket, "href": href}},
			})
			return
		}
		w.Header().Set("Content-Type", "application/xrd+xml")
		var b strings.Builder
		b.WriteString(`<?xml version='1.0' encoding='utf-8'?>` + "\n")
		b.WriteString(`<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>` + "\n")
		b.WriteString(`  <Link rel='` + RelWebSocket + `' href='`)
		_ = xml.EscapeText(&b, []byte(href))
		b.WriteString("'/>\n</XRD>\n")
		_, _ = w.Write([]byte(b.String()))
	})
}
