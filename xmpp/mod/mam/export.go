package mam

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"gatehouse/xmpp/stanza"
)

// This file holds what other archives (the group chat service's room
// archive, xmpp/mod/muc) reuse of this package: the XEP-0313 query
// protocol and in-place replacement for retraction tombstones.

// AnswerQuery answers the XEP-0313 query iq st (get: the form; set: a
// query) against the archive named owner in store. Each result message goes
// to send, in order, before the iq result is returned; a send error ends
// the answer (nil is returned: nobody is left to answer). Result messages
// come from st's 'to' as a bare JID.
func AnswerQuery(ctx context.Context, store *Store, owner string, st *stanza.Stanza, maxPage int, send func(*stanza.Stanza) error) *stanza.Stanza {
	if st.Type == "get" {
		return st.Result(queryForm())
	}
	req, qerr := parseQuery(st.Payload(), maxPage)
	if qerr != nil {
		return stanza.Bounce(st, qerr.cond, qerr.text)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	// Messages archived with AppendAsync just before must be in the answer.
	if err := store.Sync(ctx); err != nil {
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	res, err := store.Query(ctx, owner, req.Filter, req.Page)
	switch {
	case errors.Is(err, ErrNotFound):
		return stanza.Bounce(st, stanza.ItemNotFound, "no such archive id")
	case err != nil:
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	order := res.Items
	if req.Flip {
		order = slices.Clone(order)
		slices.Reverse(order)
	}
	for _, it := range order {
		fwd := stanza.NewElement(NSForward, "forwarded").
			Append(stanza.NewElement(stanza.NSDelay, "delay", "stamp", stamp(it.Time)))
		if msg, err := decodeStanza(it.XML); err == nil {
			fwd.Append(msg.Element())
		}
		r := stanza.NewElement(NS, "result", "id", it.ID)
		if req.QueryID != "" {
			r.SetAttr("queryid", req.QueryID)
		}
		msg := &stanza.Stanza{Kind: stanza.KindMessage, From: st.To.Bare(), To: st.From,
			Children: []stanza.Node{{El: r.Append(fwd)}}}
		if err := send(msg); err != nil {
			return nil
		}
	}
	return st.Result(finElement(res))
}

// Replace swaps the stored message of archive id in user's archive for
// xml (a retraction tombstone, XEP-0424/XEP-0425), keeping its id and
// time. It first waits for queued appends (AppendAsync). An id that is not
// in the archive gives ErrNotFound.
func (s *Store) Replace(ctx context.Context, user, id string, xml []byte) error {
	if len(xml) == 0 {
		return fmt.Errorf("mam: replace: empty message: %w", ErrInvalid)
	}
	if err := s.Sync(ctx); err != nil {
		return err
	}
	r, err := s.w.ExecContext(ctx, `UPDATE archive SET xml = ? WHERE username = ? AND stanza_id = ?`, xml, user, id)
	if err != nil {
		return fmt.Errorf("mam: replace %q in %q: %w", id, user, err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return fmt.Errorf("mam: replace %q in %q: %w", id, user, err)
	}
	if n == 0 {
		return fmt.Errorf("mam: replace %q in %q: %w", id, user, ErrNotFound)
	}
	return nil
}

// Get returns the archived message with archive id from user's archive,
// or ErrNotFound. Like Replace, it first waits for queued appends.
func (s *Store) Get(ctx context.Context, user, id string) (Item, error) {
	if err := s.Sync(ctx); err != nil {
		return Item{}, err
	}
	res, err := s.Query(ctx, user, Filter{IDs: []string{id}}, Page{Max: 1})
	if err != nil {
		return Item{}, err
	}
	if len(res.Items) == 0 {
		return Item{}, fmt.Errorf("mam: get %q in %q: %w", id, user, ErrNotFound)
	}
	return res.Items[0], nil
}

// Metadata returns the <metadata/> answer (XEP-0313 §7: first and last
// archive id and stamp; empty for an empty archive) of owner's archive.
func Metadata(ctx context.Context, store *Store, owner string) (*stanza.Element, error) {
	first, last, ok, err := store.Bounds(ctx, owner)
	if err != nil {
		return nil, err
	}
	md := stanza.NewElement(NS, "metadata")
	if ok {
		md.Append(
			stanza.NewElement(NS, "start", "id", first.ID, "timestamp", stamp(first.Time)),
			stanza.NewElement(NS, "end", "id", last.ID, "timestamp", stamp(last.Time)),
		)
	}
	return md, nil
}
