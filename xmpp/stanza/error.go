package stanza

import (
	"encoding/xml"

	mstanza "mellium.im/xmpp/stanza"
)

// ErrorType is the RFC 6120 §8.3.2 error type.
type ErrorType = mstanza.ErrorType

// Condition is an RFC 6120 §8.3.3 defined condition.
type Condition = mstanza.Condition

// Error types and the conditions we use, re-exported so callers need only
// this package.
const (
	Auth     = mstanza.Auth
	Cancel   = mstanza.Cancel
	Continue = mstanza.Continue
	Modify   = mstanza.Modify
	Wait     = mstanza.Wait

	BadRequest            = mstanza.BadRequest
	Conflict              = mstanza.Conflict
	FeatureNotImplemented = mstanza.FeatureNotImplemented
	Forbidden             = mstanza.Forbidden
	Gone                  = mstanza.Gone
	InternalServerError   = mstanza.InternalServerError
	ItemNotFound          = mstanza.ItemNotFound
	JIDMalformed          = mstanza.JIDMalformed
	NotAcceptable         = mstanza.NotAcceptable
	NotAllowed            = mstanza.NotAllowed
	NotAuthorized         = mstanza.NotAuthorized
	PolicyViolation       = mstanza.PolicyViolation
	RecipientUnavailable  = mstanza.RecipientUnavailable
	RemoteServerNotFound  = mstanza.RemoteServerNotFound
	RemoteServerTimeout   = mstanza.RemoteServerTimeout
	ResourceConstraint    = mstanza.ResourceConstraint
	ServiceUnavailable    = mstanza.ServiceUnavailable
	SubscriptionRequired  = mstanza.SubscriptionRequired
	UndefinedCondition    = mstanza.UndefinedCondition
	UnexpectedRequest     = mstanza.UnexpectedRequest
)

// ErrorElement builds <error type='typ'><cond/><text/></error>.
func ErrorElement(typ ErrorType, cond Condition, text string) *Element {
	e := NewElement("", "error", "type", string(typ))
	e.Append(NewElement(NSStanzaErr, string(cond)))
	if text != "" {
		t := NewElement(NSStanzaErr, "text")
		t.Attr = append(t.Attr, xml.Attr{Name: xml.Name{Space: NSXML, Local: "lang"}, Value: "en"})
		e.Append(t.AppendText(text))
	}
	return e
}

// ErrorReply returns the error bounce for s (RFC 6120 §8.3.1): addresses
// swapped, type error, the original payload kept and the error appended.
// It returns nil for a stanza of type error, which must never be answered.
func ErrorReply(s *Stanza, typ ErrorType, cond Condition, text string) *Stanza {
	if s.IsError() {
		return nil
	}
	r := &Stanza{Kind: s.Kind, ID: s.ID, Type: "error", To: s.From, From: s.To, Lang: s.Lang}
	r.Children = append(r.Children, s.Children...)
	r.Append(ErrorElement(typ, cond, text))
	return r
}

// DefaultType returns the error type RFC 6120 §8.3.3 recommends for cond.
func DefaultType(cond Condition) ErrorType {
	switch cond {
	case BadRequest, JIDMalformed, NotAcceptable, PolicyViolation:
		return Modify
	case Forbidden, NotAuthorized, RegistrationRequiredCond, SubscriptionRequired:
		return Auth
	case RecipientUnavailable, RemoteServerTimeout, ResourceConstraint, UnexpectedRequest:
		return Wait
	}
	return Cancel
}

// RegistrationRequiredCond is RFC 6120 registration-required.
const RegistrationRequiredCond = mstanza.RegistrationRequired

// Bounce is ErrorReply with the condition's default type.
func Bounce(s *Stanza, cond Condition, text string) *Stanza {
	return ErrorReply(s, DefaultType(cond), cond, text)
}

// ErrorCondition returns the defined condition of an error stanza, or "".
func (s *Stanza) ErrorCondition() Condition {
	e := s.Child("", "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Name.Space == NSStanzaErr && c.Name.Local != "text" {
			return Condition(c.Name.Local)
		}
	}
	return ""
}
