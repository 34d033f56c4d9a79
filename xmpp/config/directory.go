package config

import (
	"net/url"
	"strings"
)

// Directory auth modes: how logins of directory users are verified.
const (
	// DirectoryAuthPlain offers only SASL PLAIN (over TLS) and checks each
	// password with an LDAP bind.
	DirectoryAuthPlain = "plain"
	// DirectoryAuthSCRAMCache checks PLAIN logins with a bind and keeps
	// salted SCRAM keys of the password that bound, so later logins may
	// use SCRAM until the keys expire (scram_cache_ttl).
	DirectoryAuthSCRAMCache = "scram_cache"
)

// Directory configures the corporate directory (LDAP, xmpp/directory):
// logins, groups, managers, shared rosters and vCards.
type Directory struct {
	// Enabled turns the directory on. Default false.
	Enabled bool `yaml:"enabled"`
	// URL is ldap://host:port or ldaps://host:port.
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection with StartTLS (required
	// unless insecure is set: binds carry passwords).
	StartTLS bool `yaml:"start_tls"`
	// CAFile is a PEM file of CAs for the server certificate besides the
	// system ones.
	CAFile string `yaml:"ca_file"`
	// Insecure allows a plain ldap:// connection without StartTLS (only
	// for a directory on loopback).
	Insecure bool `yaml:"insecure"`
	// BindDN and BindPasswordFile are the service account that searches.
	BindDN           string `yaml:"bind_dn"`
	BindPasswordFile string `yaml:"bind_password_file"`
	// BaseDN is where users are searched.
	BaseDN string `yaml:"base_dn"`
	// UserFilter selects user entries; "%s" is replaced by the (escaped)
	// user name when looking one user up, and by "*" to list them all.
	UserFilter string `yaml:"user_filter"`
	// UsernameAttr holds the XMPP localpart (uid; sAMAccountName on AD).
	UsernameAttr string `yaml:"username_attr"`
	// DisabledFilter matches disabled accounts, e.g.
	// "(userAccountControl:1.2.840.113556.1.4.803:=2)" on AD. Empty: none.
	DisabledFilter string `yaml:"disabled_filter"`
	// GroupBaseDN is where groups are searched; default BaseDN.
	GroupBaseDN string `yaml:"group_base_dn"`
	// GroupFilter selects group entries.
	GroupFilter string `yaml:"group_filter"`
	// GroupNameAttr names a group (cn).
	GroupNameAttr string `yaml:"group_name_attr"`
	// MemberAttrs hold members' DNs (member, uniqueMember); groups may be
	// members of groups (nested), resolved to their users.
	MemberAttrs []string `yaml:"member_attrs"`
	// ManagerAttr holds the DN of a user's manager.
	ManagerAttr string `yaml:"manager_attr"`
	// SharedRosterGroups are directory groups whose members see each
	// other in their rosters, with presence.
	SharedRosterGroups []string `yaml:"shared_roster_groups"`
	// VCard maps vCard fields to directory attributes; a field left out
	// is not filled.
	VCard DirectoryVCard `yaml:"vcard"`
	// Auth is plain or scram_cache (see the constants).
	Auth string `yaml:"auth"`
	// SCRAMCacheTTL is how long SCRAM keys cached from a bind stay usable;
	// after that the next login must be PLAIN (bind) again.
	SCRAMCacheTTL Duration `yaml:"scram_cache_ttl"`
	// Refresh is how often users, groups, managers, shared rosters and
	// vCards are re-read.
	Refresh Duration `yaml:"refresh"`
	// Timeout bounds one directory operation.
	Timeout Duration `yaml:"timeout"`
	// PoolSize is the number of pooled connections.
	PoolSize int `yaml:"pool_size"`
}

// DirectoryVCard maps vCard fields to attributes.
type DirectoryVCard struct {
	FullName   string `yaml:"full_name"`
	Given      string `yaml:"given"`
	Family     string `yaml:"family"`
	Title      string `yaml:"title"`
	Department string `yaml:"department"`
	Phone      string `yaml:"phone"`
	Email      string `yaml:"email"`
	Photo      string `yaml:"photo"`
}

func directoryDefaults() Directory {
	return Directory{
		UserFilter:         "(&(objectClass=inetOrgPerson)(uid=%s))",
		UsernameAttr:       "uid",
		GroupFilter:        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
		GroupNameAttr:      "cn",
		MemberAttrs:        []string{"member", "uniqueMember"},
		ManagerAttr:        "manager",
		SharedRosterGroups: []string{},
		VCard: DirectoryVCard{FullName: "cn", Given: "givenName", Family: "sn", Title: "title",
			Department: "ou", Phone: "telephoneNumber", Email: "mail", Photo: "jpegPhoto"},
		Auth:          DirectoryAuthSCRAMCache,
		SCRAMCacheTTL: Duration(24 * 60 * 60 * 1e9),
		Refresh:       Duration(5 * 60 * 1e9),
		Timeout:       Duration(10 * 1e9),
		PoolSize:      4,
	}
}

func (c *Directory) validate(v *checker) {
	v.oneOf("directory.auth", c.Auth, DirectoryAuthPlain, DirectoryAuthSCRAMCache)
	v.positive("directory.refresh", c.Refresh)
	v.positive("directory.timeout", c.Timeout)
	v.positive("directory.scram_cache_ttl", c.SCRAMCacheTTL)
	v.between("directory.pool_size", c.PoolSize, 1, 64)
	if !c.Enabled {
		return
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || u.Host == "":
		v.fail("directory.url", "must be ldap://host:port or ldaps://host:port, got %q", c.URL)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		v.fail("directory.url", "scheme must be ldap or ldaps, got %q", u.Scheme)
	case u.Scheme == "ldap" && !c.StartTLS && !c.Insecure:
		v.fail("directory.start_tls", "binds carry passwords: use ldaps://, start_tls: true, or (directory on loopback only) insecure: true")
	case u.Scheme == "ldaps" && c.StartTLS:
		v.fail("directory.start_tls", "ldaps:// is already TLS; StartTLS is for ldap://")
	}
	if c.BaseDN == "" {
		v.fail("directory.base_dn", "is required")
	}
	if !strings.Contains(c.UserFilter, "%s") || !strings.HasPrefix(c.UserFilter, "(") {
		v.fail("directory.user_filter", "must be an LDAP filter containing %%s, got %q", c.UserFilter)
	}
	if c.DisabledFilter != "" && !strings.HasPrefix(c.DisabledFilter, "(") {
		v.fail("directory.disabled_filter", "must be an LDAP filter in parentheses, got %q", c.DisabledFilter)
	}
	if c.BindDN != "" && c.BindPasswordFile == "" {
		v.fail("directory.bind_password_file", "is required with bind_dn")
	}
	if c.UsernameAttr == "" {
		v.fail("directory.username_attr", "must not be empty")
	}
	if len(c.MemberAttrs) == 0 {
		v.fail("directory.member_attrs", "needs at least one attribute (member, uniqueMember)")
	}
}
