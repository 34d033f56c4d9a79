package conn

import (
	"errors"
	"testing"
	"time"

	"gatehouse/xmpp/stanza"
)

func msg(id string) *stanza.Stanza { return &stanza.Stanza{Kind: stanza.KindMessage, ID: id} }

func ids(us []Unacked) string {
	s := ""
	for _, u := range us {
		s += u.Stanza.ID
	}
	return s
}

// TestAcks drives the ring through pushes and acks, including h wrapping
// at 2^32 (XEP-0198 §4) and bad counts.
func TestAcks(t *testing.T) {
	type step struct {
		push    string // ids to push, one letter each
		ack     int64  // -1: no ack; else h relative to the starting count
		wantErr error
		pending string
	}
	tests := []struct {
		name  string
		start uint32 // the counter before the first push
		steps []step
	}{
		{"in order", 0, []step{
			{push: "abc", ack: -1, pending: "abc"},
			{ack: 1, pending: "bc"},
			{ack: 3, pending: ""},
			{push: "d", ack: 4, pending: ""},
		}},
		{"ack all at once after growth", 0, []step{
			{push: "abcdefghijklmnopqrstuvwxyz", ack: 20, pending: "uvwxyz"},
			{push: "ABCDEFGHIJKLMNOPQRST", ack: -1, pending: "uvwxyzABCDEFGHIJKLMNOPQRST"},
			{ack: 46, pending: ""},
		}},
		{"h wraps at 2^32", 1<<32 - 2, []step{
			{push: "abcd", ack: -1, pending: "abcd"},
			{ack: 2, pending: "cd"}, // h = 0 on the wire
			{ack: 4, pending: ""},   // h = 2
		}},
		{"too high changes nothing", 0, []step{
			{push: "ab", ack: 3, wantErr: ErrAckTooHigh, pending: "ab"},
			{ack: 2, pending: ""},
		}},
		{"too high across the wrap", 1<<32 - 1, []step{
			{push: "ab", ack: 5, wantErr: ErrAckTooHigh, pending: "ab"},
		}},
		{"stale ack is ignored", 0, []step{
			{push: "abc", ack: 2, pending: "c"},
			{ack: 1, pending: "c"},
			{ack: 3, pending: ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAcks(0, 1, nil)
			a.sent = tc.start
			for i, s := range tc.steps {
				for _, r := range s.push {
					a.Push(msg(string(r)), time.Time{})
				}
				if s.ack >= 0 {
					err := a.Ack(tc.start + uint32(s.ack))
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: err %v, want %v", i, err, s.wantErr)
					}
				}
				if got := ids(a.Pending()); got != s.pending {
					t.Fatalf("step %d: pending %q, want %q", i, got, s.pending)
				}
				if a.Len() != len(s.pending) {
					t.Fatalf("step %d: Len %d", i, a.Len())
				}
			}
		})
	}
}

func TestAcksLimitAndDrain(t *testing.T) {
	a := NewAcks(2, 1, nil)
	if a.Push(msg("a"), time.Time{}) || a.Push(msg("b"), time.Time{}) {
		t.Fatal("over the limit too early")
	}
	if !a.Push(msg("c"), time.Time{}) {
		t.Fatal("third stanza is over a limit of 2")
	}
	if got := ids(a.Drain()); got != "abc" || a.Len() != 0 || a.Sent() != 3 {
		t.Fatalf("drained %q, len %d, sent %d", got, a.Len(), a.Sent())
	}
	// After a drain the count goes on: the peer's h is still 3 for all.
	if err := a.Ack(3); err != nil {
		t.Fatal(err)
	}
}
