package irc

import (
	"errors"
	"strings"

	"mellium.im/xmpp/jid"

	"gatehouse/transports/escape"
)

// Addressing (as biboumi does it, one transport serving several networks):
//
//	irc.example.com                        the gateway
//	nick%network@irc.example.com           an IRC user (XEP-0106 escaped)
//	#channel%network@irc.example.com       a channel as a room
//	#channel%network@irc.example.com/nick  an occupant of it
type target struct {
	network  string
	name     string // nick or channel; "" for the gateway itself
	channel  bool
	resource string
}

var errBadAddress = errors.New("irc: not an IRC address")

// parseTarget reads the transport's address j.
func parseTarget(j jid.JID) (target, error) {
	local := j.Localpart()
	if local == "" {
		return target{resource: j.Resourcepart()}, nil
	}
	i := strings.LastIndexByte(local, '%')
	if i <= 0 || i == len(local)-1 {
		return target{}, errBadAddress
	}
	name := escape.Unlocal(local[:i])
	t := target{network: local[i+1:], name: name, resource: j.Resourcepart()}
	t.channel = isChannel(name)
	return t, nil
}

func isChannel(name string) bool {
	return name != "" && strings.ContainsRune("#&+!", rune(name[0]))
}

// userJID is the address of an IRC user.
func userJID(domain, network, nick string) (jid.JID, error) {
	return jid.New(escape.Local(nick)+"%"+network, domain, "")
}

// roomJID is the address of a channel, or of an occupant when nick is set.
func roomJID(domain, network, channel, nick string) (jid.JID, error) {
	return jid.New(escape.Local(channel)+"%"+network, domain, nick)
}
