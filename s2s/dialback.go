package s2s

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"strings"
)

// Dialback namespaces (XEP-0220).
const (
	nsDialback     = "jabber:server:dialback"
	nsDialbackFeat = "urn:xmpp:features:dialback"
)

// DialbackKey returns the XEP-0185 dialback key the originating server
// hands to the receiving server for the stream with id streamID:
// HMAC-SHA256(hex(SHA256(secret)), receiving + " " + originating + " " +
// streamID), hex-encoded. Only the server that issued a key ever checks it,
// so the exact recipe matters for our own servers only; it is the one the
// XEP recommends, which keeps keys valid across a cluster sharing the secret.
func DialbackKey(secret []byte, receiving, originating, streamID string) string {
	sum := sha256.Sum256(secret)
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(sum[:])))
	mac.Write([]byte(receiving))
	mac.Write([]byte{' '})
	mac.Write([]byte(originating))
	mac.Write([]byte{' '})
	mac.Write([]byte(streamID))
	return hex.EncodeToString(mac.Sum(nil))
}

// checkDialbackKey compares a received key with the one we would issue,
// in constant time.
func checkDialbackKey(secret []byte, receiving, originating, streamID, key string) bool {
	want := DialbackKey(secret, receiving, originating, streamID)
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(want)) == 1
}

// dbElement renders a db:result or db:verify element. typ "" leaves the
// type out (a request); body is the key of a request. cond, for type
// error, is a stanza error condition (XEP-0220 §2.4).
func dbElement(name, from, to, id, typ, body, cond string) []byte {
	var b strings.Builder
	b.WriteString("<db:")
	b.WriteString(name)
	attr := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteString(" " + k + "='")
		_ = xml.EscapeText(&b, []byte(v))
		b.WriteString("'")
	}
	attr("from", from)
	attr("to", to)
	attr("id", id)
	attr("type", typ)
	switch {
	case typ == "error":
		errType := "cancel"
		if cond == "remote-server-timeout" || cond == "remote-connection-failed" {
			errType = "wait"
		}
		b.WriteString("><error type='" + errType + "'><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:" + name + ">")
	case body != "":
		b.WriteString(">")
		_ = xml.EscapeText(&b, []byte(body))
		b.WriteString("</db:" + name + ">")
	default:
		b.WriteString("/>")
	}
	return []byte(b.String())
}
