package pubsub

import (
	"errors"
	"fmt"
	"strconv"

	"gatehouse/xmpp/stanza"
)

// Access models (XEP-0060 §4.5). roster and authorize are not offered.
const (
	AccessOpen      = "open"
	AccessPresence  = "presence"
	AccessWhitelist = "whitelist"
)

// Affiliations (XEP-0060 §4.1).
const (
	AffOwner     = "owner"
	AffPublisher = "publisher"
	AffMember    = "member"
	AffNone      = "none"
	AffOutcast   = "outcast"
)

// send_last_published_item values.
const (
	SendNever       = "never"
	SendOnSub       = "on_sub"
	SendOnSubAndPre = "on_sub_and_presence"
)

// NSData is the XEP-0004 data forms namespace.
const NSData = "jabber:x:data"

// Form types.
const (
	formNodeConfig     = "http://jabber.org/protocol/pubsub#node_config"
	formPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
)

// Config is a node's configuration (the pubsub#node_config fields we
// support).
type Config struct {
	AccessModel     string `json:"access_model"`
	MaxItems        int    `json:"max_items"`
	PersistItems    bool   `json:"persist_items"`
	SendLast        string `json:"send_last_published_item"`
	NotifyRetract   bool   `json:"notify_retract"`
	NotifyDelete    bool   `json:"notify_delete"`
	DeliverPayloads bool   `json:"deliver_payloads"`
	PublishModel    string `json:"publish_model"`
	Title           string `json:"title,omitempty"`
}

// errForm is a form value the node cannot take (not-acceptable).
var errForm = errors.New("pubsub: unsupported configuration")

// errPrecondition is a publish-options mismatch (XEP-0223).
var errPrecondition = errors.New("pubsub: precondition not met")

// pepDefaults is the configuration of a new PEP node (XEP-0163 §4.1:
// presence access, last item on subscription and presence).
func pepDefaults() Config {
	return Config{AccessModel: AccessPresence, MaxItems: 1, PersistItems: true, SendLast: SendOnSubAndPre,
		NotifyRetract: true, NotifyDelete: true, DeliverPayloads: true, PublishModel: "publishers"}
}

// serviceDefaults is the configuration of a new node on the service.
func serviceDefaults() Config {
	return Config{AccessModel: AccessOpen, MaxItems: 10, PersistItems: true, SendLast: SendNever,
		NotifyRetract: true, NotifyDelete: true, DeliverPayloads: true, PublishModel: "publishers"}
}

// formFields returns a submitted form's fields (var → values) and its
// FORM_TYPE.
func formFields(x *stanza.Element) (map[string][]string, string) {
	out := map[string][]string{}
	for _, f := range x.Elements() {
		if f.Name.Local != "field" {
			continue
		}
		var vals []string
		for _, v := range f.Elements() {
			if v.Name.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		out[f.AttrValue("var")] = vals
	}
	ft := ""
	if v := out["FORM_TYPE"]; len(v) > 0 {
		ft = v[0]
	}
	delete(out, "FORM_TYPE")
	return out, ft
}

func parseBool(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not a boolean", errForm, s)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// apply sets the fields of a submitted form on c. maxCap is what "max"
// means for max_items; strict refuses unknown fields (configure), while
// publish-options ignores them.
func (c *Config) apply(fields map[string][]string, maxCap int, strict bool) error {
	for k, v := range fields {
		val := first(v)
		var err error
		switch k {
		case "pubsub#access_model":
			switch val {
			case AccessOpen, AccessPresence, AccessWhitelist:
				c.AccessModel = val
			default:
				err = fmt.Errorf("%w: access model %q (open, presence and whitelist are supported)", errForm, val)
			}
		case "pubsub#max_items":
			if val == "max" {
				c.MaxItems = maxCap
				break
			}
			n, perr := strconv.Atoi(val)
			if perr != nil || n < 1 {
				err = fmt.Errorf("%w: max_items %q", errForm, val)
			} else {
				c.MaxItems = min(n, maxCap)
			}
		case "pubsub#persist_items":
			c.PersistItems, err = parseBool(val)
		case "pubsub#send_last_published_item":
			switch val {
			case SendNever, SendOnSub, SendOnSubAndPre:
				c.SendLast = val
			default:
				err = fmt.Errorf("%w: send_last_published_item %q", errForm, val)
			}
		case "pubsub#notify_retract":
			c.NotifyRetract, err = parseBool(val)
		case "pubsub#notify_delete":
			c.NotifyDelete, err = parseBool(val)
		case "pubsub#deliver_payloads":
			c.DeliverPayloads, err = parseBool(val)
		case "pubsub#publish_model":
			switch val {
			case "publishers", "open":
				c.PublishModel = val
			default:
				err = fmt.Errorf("%w: publish_model %q", errForm, val)
			}
		case "pubsub#title":
			c.Title = val
		case "pubsub#deliver_notifications", "pubsub#notification_type", "pubsub#notify_config", "pubsub#notify_sub",
			"pubsub#presence_based_delivery", "pubsub#purge_offline", "pubsub#subscribe", "pubsub#type",
			"pubsub#itemreply", "pubsub#description", "pubsub#language":
			// Accepted and fixed: notifications always go out, as headline
			// messages, whatever the form says.
		default:
			if strict {
				err = fmt.Errorf("%w: option %s", errForm, k)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// meets reports whether c satisfies publish-options preconditions
// (XEP-0223): every known field must equal the node's value.
func (c Config) meets(fields map[string][]string, maxCap int) error {
	want := c
	if err := want.apply(fields, maxCap, false); err != nil {
		return err
	}
	if want != c {
		return errPrecondition
	}
	return nil
}

// form renders c as a node configuration form.
func (c Config) form(maxCap int) *stanza.Element {
	x := stanza.NewElement(NSData, "x", "type", "form")
	field := func(v, typ, val string, opts ...string) {
		f := stanza.NewElement(NSData, "field", "var", v, "type", typ)
		f.Append(stanza.NewElement(NSData, "value").AppendText(val))
		for _, o := range opts {
			f.Append(stanza.NewElement(NSData, "option").Append(stanza.NewElement(NSData, "value").AppendText(o)))
		}
		x.Append(f)
	}
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	field("FORM_TYPE", "hidden", formNodeConfig)
	field("pubsub#title", "text-single", c.Title)
	field("pubsub#access_model", "list-single", c.AccessModel, AccessOpen, AccessPresence, AccessWhitelist)
	field("pubsub#max_items", "text-single", strconv.Itoa(c.MaxItems))
	field("pubsub#persist_items", "boolean", b(c.PersistItems))
	field("pubsub#send_last_published_item", "list-single", c.SendLast, SendNever, SendOnSub, SendOnSubAndPre)
	field("pubsub#notify_retract", "boolean", b(c.NotifyRetract))
	field("pubsub#notify_delete", "boolean", b(c.NotifyDelete))
	field("pubsub#deliver_payloads", "boolean", b(c.DeliverPayloads))
	field("pubsub#publish_model", "list-single", c.PublishModel, "publishers", "open")
	_ = maxCap
	return x
}
