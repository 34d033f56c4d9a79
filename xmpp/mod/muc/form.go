package muc

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"gatehouse/xmpp/stanza"
)

// Form field names (XEP-0045 §16.5.3, muc#roomconfig FORM_TYPE).
const (
	fieldName          = "muc#roomconfig_roomname"
	fieldDesc          = "muc#roomconfig_roomdesc"
	fieldPersistent    = "muc#roomconfig_persistentroom"
	fieldPublic        = "muc#roomconfig_publicroom"
	fieldMembersOnly   = "muc#roomconfig_membersonly"
	fieldModerated     = "muc#roomconfig_moderatedroom"
	fieldPasswordProt  = "muc#roomconfig_passwordprotectedroom"
	fieldSecret        = "muc#roomconfig_roomsecret"
	fieldWhoIs         = "muc#roomconfig_whois"
	fieldMaxUsers      = "muc#roomconfig_maxusers"
	fieldChangeSubject = "muc#roomconfig_changesubject"
	fieldAllowInvites  = "muc#roomconfig_allowinvites"
	fieldAllowPM       = "muc#roomconfig_allowpm"
	fieldLogging       = "muc#roomconfig_enablelogging"
	fieldHistory       = "muc#maxhistoryfetch"
)

// Form bounds.
const (
	maxFormFields = 64
	maxTextLen    = 1024
)

// ErrForm is wrapped by every error of ParseConfigForm.
var ErrForm = errors.New("muc: bad configuration form")

// ParseConfigForm applies a submitted muc#roomconfig form (XEP-0004, type
// submit) to cur and returns the result. Fields it does not know are
// ignored; a known field with a bad value fails the whole form. An empty
// form (an instant room) keeps cur. maxUsers caps muc#roomconfig_maxusers
// and maxHist muc#maxhistoryfetch.
func ParseConfigForm(x *stanza.Element, cur RoomConfig, maxUsers, maxHist int) (RoomConfig, error) {
	cfg := cur
	fields := x.Elements()
	if len(fields) > maxFormFields {
		return cur, fmt.Errorf("%w: too many fields", ErrForm)
	}
	protected := cur.Password != ""
	secret, secretSet := "", false
	for _, f := range fields {
		if f.Name.Local != "field" || f.Name.Space != NSData {
			continue
		}
		name := f.AttrValue("var")
		vals := fieldValues(f)
		one := func() (string, error) {
			switch len(vals) {
			case 0:
				return "", nil
			case 1:
				if len(vals[0]) > maxTextLen || !utf8.ValidString(vals[0]) {
					return "", fmt.Errorf("%w: %s: value too long", ErrForm, name)
				}
				return vals[0], nil
			}
			return "", fmt.Errorf("%w: %s takes one value", ErrForm, name)
		}
		v, err := one()
		if err != nil {
			if name == "FORM_TYPE" || isKnown(name) {
				return cur, err
			}
			continue
		}
		boolean := func(dst *bool) error {
			switch v {
			case "1", "true":
				*dst = true
			case "0", "false", "":
				*dst = false
			default:
				return fmt.Errorf("%w: %s: %q is not a boolean", ErrForm, name, v)
			}
			return nil
		}
		switch name {
		case "FORM_TYPE":
			if v != NSRoomConfig {
				return cur, fmt.Errorf("%w: FORM_TYPE must be %s", ErrForm, NSRoomConfig)
			}
		case fieldName:
			cfg.Name = v
		case fieldDesc:
			cfg.Desc = v
		case fieldPersistent:
			err = boolean(&cfg.Persistent)
		case fieldPublic:
			err = boolean(&cfg.Public)
		case fieldMembersOnly:
			err = boolean(&cfg.MembersOnly)
		case fieldModerated:
			err = boolean(&cfg.Moderated)
		case fieldPasswordProt:
			err = boolean(&protected)
		case fieldSecret:
			secret, secretSet = v, true
		case fieldChangeSubject:
			err = boolean(&cfg.ChangeSubject)
		case fieldAllowInvites:
			err = boolean(&cfg.AllowInvites)
		case fieldLogging:
			err = boolean(&cfg.Logging)
		case fieldWhoIs:
			if v != WhoIsModerators && v != WhoIsAnyone {
				err = fmt.Errorf("%w: %s: %q is not moderators or anyone", ErrForm, name, v)
			}
			cfg.WhoIs = v
		case fieldAllowPM:
			switch v {
			case PMAnyone, PMParticipants, PMModerators, PMNone:
				cfg.AllowPM = v
			default:
				err = fmt.Errorf("%w: %s: %q is not anyone, participants, moderators or none", ErrForm, name, v)
			}
		case fieldMaxUsers:
			n, perr := strconv.Atoi(v)
			switch {
			case v == "" || v == "none":
				cfg.MaxUsers = maxUsers
			case perr != nil || n < 1:
				err = fmt.Errorf("%w: %s: %q is not a positive number", ErrForm, name, v)
			case n > maxUsers:
				err = fmt.Errorf("%w: %s: at most %d", ErrForm, name, maxUsers)
			default:
				cfg.MaxUsers = n
			}
		case fieldHistory:
			n, perr := strconv.Atoi(v)
			switch {
			case perr != nil || n < 0:
				err = fmt.Errorf("%w: %s: %q is not a number", ErrForm, name, v)
			case n > maxHist:
				err = fmt.Errorf("%w: %s: at most %d", ErrForm, name, maxHist)
			default:
				cfg.History = n
			}
		}
		if err != nil {
			return cur, err
		}
	}
	switch {
	case !protected:
		cfg.Password = ""
	case secretSet:
		cfg.Password = secret
	}
	if protected && cfg.Password == "" {
		return cur, fmt.Errorf("%w: a password-protected room needs %s", ErrForm, fieldSecret)
	}
	return cfg, nil
}

func isKnown(name string) bool {
	switch name {
	case fieldName, fieldDesc, fieldPersistent, fieldPublic, fieldMembersOnly, fieldModerated,
		fieldPasswordProt, fieldSecret, fieldWhoIs, fieldMaxUsers, fieldChangeSubject,
		fieldAllowInvites, fieldAllowPM, fieldLogging, fieldHistory:
		return true
	}
	return false
}

func fieldValues(f *stanza.Element) []string {
	var out []string
	for _, c := range f.Elements() {
		if c.Name.Local == "value" && c.Name.Space == NSData {
			out = append(out, c.Text())
		}
	}
	return out
}

// configForm is the form an owner fills in (XEP-0045 §10.2).
func (r *Room) configForm() *stanza.Element {
	c := r.cfg
	x := stanza.NewElement(NSData, "x", "type", "form")
	x.Append(stanza.NewElement(NSData, "title").AppendText("Configuration of " + r.jid.String()))
	x.Append(hidden("FORM_TYPE", NSRoomConfig))
	x.Append(
		field(fieldName, "text-single", "Room name", c.Name),
		field(fieldDesc, "text-single", "Description", c.Desc),
		boolField(fieldPersistent, "Keep the room when the last occupant leaves", c.Persistent),
		boolField(fieldPublic, "List the room in the directory", c.Public),
		boolField(fieldMembersOnly, "Members only", c.MembersOnly),
		boolField(fieldModerated, "Moderated (only participants with voice may speak)", c.Moderated),
		boolField(fieldPasswordProt, "Password protected", c.Password != ""),
		field(fieldSecret, "text-private", "Password", c.Password),
		listField(fieldWhoIs, "Who may see real addresses", c.WhoIs,
			WhoIsModerators, "Moderators only", WhoIsAnyone, "Anyone"),
		listField(fieldMaxUsers, "Most occupants", strconv.Itoa(c.MaxUsers),
			"10", "10", "20", "20", "50", "50", "100", "100", strconv.Itoa(r.svc.cfg.MaxOccupants), strconv.Itoa(r.svc.cfg.MaxOccupants)),
		boolField(fieldChangeSubject, "Occupants may change the subject", c.ChangeSubject),
		boolField(fieldAllowInvites, "Occupants may invite others (members only rooms)", c.AllowInvites),
		listField(fieldAllowPM, "Who may send private messages", c.AllowPM,
			PMAnyone, "Anyone", PMParticipants, "Participants", PMModerators, "Moderators", PMNone, "Nobody"),
		field(fieldHistory, "text-single", "Messages sent to new occupants", strconv.Itoa(c.History)),
	)
	if r.svc.archive != nil {
		x.Append(boolField(fieldLogging, "Keep an archive of the room's messages", c.Logging))
	}
	return x
}

func hidden(name, value string) *stanza.Element {
	return stanza.NewElement(NSData, "field", "var", name, "type", "hidden").
		Append(stanza.NewElement(NSData, "value").AppendText(value))
}

func field(name, typ, label, value string) *stanza.Element {
	f := stanza.NewElement(NSData, "field", "var", name, "type", typ, "label", label)
	return f.Append(stanza.NewElement(NSData, "value").AppendText(value))
}

func boolField(name, label string, v bool) *stanza.Element {
	s := "0"
	if v {
		s = "1"
	}
	return field(name, "boolean", label, s)
}

// listField is a list-single with options given as value, label pairs.
func listField(name, label, value string, opts ...string) *stanza.Element {
	f := field(name, "list-single", label, value)
	seen := map[string]bool{}
	for i := 0; i+1 < len(opts); i += 2 {
		if seen[opts[i]] {
			continue
		}
		seen[opts[i]] = true
		f.Append(stanza.NewElement(NSData, "option", "label", opts[i+1]).
			Append(stanza.NewElement(NSData, "value").AppendText(opts[i])))
	}
	return f
}
