package directory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Roster changes roster items and pushes them to the user's online
// sessions (the roster module); nil writes the database only.
type Roster interface {
	Update(ctx context.Context, owner jid.JID, it storage.RosterItem) error
	Remove(ctx context.Context, owner, contact jid.JID) error
}

// Syncer mirrors the directory into the server's database: accounts
// (created without credentials; logins go to the directory), their lock
// state, managers, groups and memberships, vCards and the shared-roster
// items between members of the configured groups. It only ever removes
// what an earlier sync made.
type Syncer struct {
	Dir    *Directory
	DB     *storage.DB
	Cfg    config.Directory
	Domain string // the host of directory users' JIDs
	Roster Roster
	Log    logrus.FieldLogger
}

// Result counts what one sync did.
type Result struct {
	Users         int `json:"users"`
	Created       int `json:"created"`
	Locked        int `json:"locked"` // disabled in the directory or gone from it
	Groups        int `json:"groups"`
	GroupsRemoved int `json:"groups_removed"`
	Memberships   int `json:"membership_changes"`
	RosterAdded   int `json:"roster_added"`
	RosterRemoved int `json:"roster_removed"`
}

// Sync reads the directory and applies it. When the directory cannot be
// read nothing changes (ErrUnavailable).
func (s *Syncer) Sync(ctx context.Context) (Result, error) {
	var res Result
	snap, err := s.Dir.Snapshot(ctx)
	if err != nil {
		return res, err
	}
	owned, err := s.DB.DirectoryOwned(ctx, storage.DirectoryUser)
	if err != nil {
		return res, err
	}
	present := map[string]bool{}
	for _, u := range snap.Users {
		present[u.Name] = true
		res.Users++
		if err := s.DB.CreateUser(ctx, u.Name, auth.Credentials{}); err == nil {
			res.Created++
		} else if !errors.Is(err, storage.ErrUserExists) {
			return res, err
		}
		if err := s.DB.SetDirectoryOwned(ctx, storage.DirectoryUser, u.Name, u.DN); err != nil {
			return res, err
		}
		if err := s.DB.SetLocked(ctx, u.Name, u.Disabled); err != nil {
			return res, err
		}
		if u.Disabled {
			res.Locked++
		}
		if err := s.DB.SetVCard(ctx, u.Name, VCardXML(u.VCard)); err != nil {
			return res, err
		}
	}
	for name := range owned {
		if !present[name] {
			// Gone from the directory: locked, its data kept (the
			// compliance archive and history still refer to it).
			if err := s.DB.SetLocked(ctx, name, true); err != nil && !errors.Is(err, storage.ErrNoUser) {
				return res, err
			}
			res.Locked++
		}
	}
	for _, u := range snap.Users {
		var err error
		if u.Manager != "" {
			err = s.DB.SetManager(ctx, u.Name, u.Manager)
		} else {
			err = s.DB.ClearManager(ctx, u.Name)
		}
		if err != nil && !errors.Is(err, storage.ErrNoUser) && !errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("directory: manager of %s: %w", u.Name, err)
		}
	}
	if err := s.syncGroups(ctx, snap, &res); err != nil {
		return res, err
	}
	if err := s.syncRoster(ctx, snap, &res); err != nil {
		return res, err
	}
	return res, nil
}

func (s *Syncer) syncGroups(ctx context.Context, snap *Snapshot, res *Result) error {
	owned, err := s.DB.DirectoryOwned(ctx, storage.DirectoryGroup)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, g := range snap.Groups {
		seen[g.Name] = true
		res.Groups++
		if err := s.DB.CreateGroup(ctx, g.Name); err != nil && !errors.Is(err, storage.ErrGroupExists) {
			return err
		}
		if err := s.DB.SetDirectoryOwned(ctx, storage.DirectoryGroup, g.Name, g.DN); err != nil {
			return err
		}
		cur, err := s.DB.GroupMembers(ctx, g.Name)
		if err != nil {
			return err
		}
		for _, m := range g.Members {
			if !slices.Contains(cur, m) {
				if err := s.DB.AddToGroup(ctx, g.Name, m); err != nil && !errors.Is(err, storage.ErrNoUser) {
					return err
				}
				res.Memberships++
			}
		}
		for _, m := range cur {
			if !slices.Contains(g.Members, m) {
				if err := s.DB.RemoveFromGroup(ctx, g.Name, m); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return err
				}
				res.Memberships++
			}
		}
	}
	for name := range owned {
		if seen[name] {
			continue
		}
		if err := s.DB.DeleteGroup(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := s.DB.DropDirectoryOwned(ctx, storage.DirectoryGroup, name); err != nil {
			return err
		}
		res.GroupsRemoved++
	}
	return nil
}

// syncRoster puts every member of a shared-roster group into the other
// members' rosters (subscription both, the group's name as roster group).
func (s *Syncer) syncRoster(ctx context.Context, snap *Snapshot, res *Result) error {
	names := map[string]string{} // user -> full name
	for _, u := range snap.Users {
		if !u.Disabled {
			names[u.Name] = u.VCard.FullName
		}
	}
	want := map[string]map[string][]string{} // user -> contact JID -> groups
	for _, g := range snap.Groups {
		if !slices.Contains(s.Cfg.SharedRosterGroups, g.Name) {
			continue
		}
		for _, u := range g.Members {
			if _, ok := names[u]; !ok {
				continue
			}
			for _, c := range g.Members {
				if _, ok := names[c]; !ok || c == u {
					continue
				}
				if want[u] == nil {
					want[u] = map[string][]string{}
				}
				cj := c + "@" + s.Domain
				want[u][cj] = append(want[u][cj], g.Name)
			}
		}
	}
	have, err := s.DB.DirectoryRoster(ctx)
	if err != nil {
		return err
	}
	users := make([]string, 0, len(want))
	for u := range want {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		owner, err := jid.New(u, s.Domain, "")
		if err != nil {
			continue
		}
		for cj, groups := range want[u] {
			cur, ok, err := s.DB.RosterItem(ctx, u, cj)
			if err != nil {
				return err
			}
			it := storage.RosterItem{JID: cj, Name: names[cj[:len(cj)-len(s.Domain)-1]], Subscription: storage.SubBoth}
			it.Groups = mergeGroups(cur.Groups, groups)
			if ok && cur.Name != "" {
				it.Name = cur.Name // the user's own name for the contact wins
			}
			if ok && cur.Subscription == storage.SubBoth && slices.Equal(cur.Groups, it.Groups) && cur.Name == it.Name && !cur.Ask && !cur.PendingIn {
				if !have[u][cj] {
					if err := s.DB.SetDirectoryRoster(ctx, u, cj, true); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.updateRoster(ctx, owner, it); err != nil {
				return err
			}
			if err := s.DB.SetDirectoryRoster(ctx, u, cj, true); err != nil {
				return err
			}
			res.RosterAdded++
		}
	}
	for u, contacts := range have {
		for cj := range contacts {
			if want[u][cj] != nil {
				continue
			}
			owner, err1 := jid.New(u, s.Domain, "")
			contact, err2 := jid.Parse(cj)
			if err1 == nil && err2 == nil {
				if err := s.removeRoster(ctx, owner, contact); err != nil {
					return err
				}
			}
			if err := s.DB.SetDirectoryRoster(ctx, u, cj, false); err != nil {
				return err
			}
			res.RosterRemoved++
		}
	}
	return nil
}

func (s *Syncer) updateRoster(ctx context.Context, owner jid.JID, it storage.RosterItem) error {
	if s.Roster != nil {
		return s.Roster.Update(ctx, owner, it)
	}
	_, err := s.DB.PutRosterItem(ctx, owner.Localpart(), it)
	return err
}

func (s *Syncer) removeRoster(ctx context.Context, owner, contact jid.JID) error {
	if s.Roster != nil {
		return s.Roster.Remove(ctx, owner, contact)
	}
	_, err := s.DB.DeleteRosterItem(ctx, owner.Localpart(), contact.String())
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func mergeGroups(a, b []string) []string {
	out := append(append([]string{}, a...), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

// VCardXML builds the vcard-temp element (XEP-0054) stored for a
// directory user; empty fields are left out. nil when all are empty.
func VCardXML(v VCard) []byte {
	const ns = "vcard-temp"
	vc := stanza.NewElement(ns, "vCard")
	text := func(name, val string) *stanza.Element { return stanza.NewElement(ns, name).AppendText(val) }
	if v.FullName != "" {
		vc.Append(text("FN", v.FullName))
	}
	if v.Given != "" || v.Family != "" {
		vc.Append(stanza.NewElement(ns, "N").Append(text("FAMILY", v.Family), text("GIVEN", v.Given)))
	}
	if v.Title != "" {
		vc.Append(text("TITLE", v.Title))
	}
	if v.Department != "" {
		vc.Append(stanza.NewElement(ns, "ORG").Append(text("ORGUNIT", v.Department)))
	}
	if v.Phone != "" {
		vc.Append(stanza.NewElement(ns, "TEL").Append(stanza.NewElement(ns, "WORK"), stanza.NewElement(ns, "VOICE"), text("NUMBER", v.Phone)))
	}
	if v.Email != "" {
		vc.Append(stanza.NewElement(ns, "EMAIL").Append(stanza.NewElement(ns, "INTERNET"), text("USERID", v.Email)))
	}
	if len(v.Photo) > 0 {
		vc.Append(stanza.NewElement(ns, "PHOTO").Append(text("TYPE", "image/jpeg"), text("BINVAL", base64.StdEncoding.EncodeToString(v.Photo))))
	}
	if len(vc.Elements()) == 0 {
		return nil
	}
	return vc.AppendXML(nil, "", stanza.NSClient)
}
