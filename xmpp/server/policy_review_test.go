package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/policy/review"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
)

// openQueue opens the server's review queue as `gatehouse review` does.
func openQueue(t *testing.T, e *policyEnv) *review.Store {
	t.Helper()
	s, err := review.Open(context.Background(), filepath.Join(e.ts.Config.DataDir, review.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func fastReview(timeout time.Duration, action string) func(*config.Config) {
	return func(c *config.Config) {
		c.Policy.ReviewPoll = config.Duration(10 * time.Millisecond)
		c.Policy.ReviewTimeout = config.Duration(timeout)
		c.Policy.ReviewTimeoutAction = action
	}
}

// TestPolicyHoldReview: with the example policy, a message about prices
// to an outside contact is held: the sender and the compliance officer
// are told, nothing leaves; a reviewer's release delivers it, a rejection
// bounces it; every step is in the archive.
func TestPolicyHoldReview(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "", fastReview(time.Hour, "reject"))
	alice := online(t, e.ts, "alice")
	compliance := online(t, e.ts, "compliance")
	q := openQueue(t, e)
	ctx := context.Background()

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='h1'><body>Here is the price list for Q1</body></message>`)
	n := alice.Expect(bodyHas("is held for review"))
	if n.Body() != "Your message to partner@irc.localhost is held for review (rule pricing-review, #1). You will be told when a reviewer decides." ||
		n.Child("urn:gatehouse:policy:0", "policy").AttrValue("review") != "1" {
		t.Fatalf("sender notice: %v", n)
	}
	cn := compliance.Expect(bodyHas("Rule pricing-review (content, hold)"))
	if !strings.Contains(cn.Body(), "Held for review as #1: gatehouse review show 1") || !strings.Contains(cn.Body(), `"price list"`) {
		t.Fatalf("compliance notice: %q", cn.Body())
	}
	items, err := q.List(ctx, false)
	if err != nil || len(items) != 1 || items[0].Account != "alice@localhost" || items[0].Peer != "partner@irc.localhost" ||
		items[0].Rule != "pricing-review" || items[0].Body != "Here is the price list for Q1" {
		t.Fatalf("queue: %v %+v", err, items)
	}
	// Nothing left: a later message overtakes the held one.
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='m1'><body>see you</body></message>`)
	e.peer.expect(bodyIs("see you"))
	e.peer.none(func(s *stanza.Stanza) bool { return s.ID == "h1" })

	if err := q.Decide(ctx, 1, true, "os:carol", "checked"); err != nil {
		t.Fatal(err)
	}
	got := e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "h1" })
	if got.Body() != "Here is the price list for Q1" || got.From.String() != "alice@localhost/desk" {
		t.Fatalf("released message: %v", got)
	}
	alice.Expect(bodyHas("(held as #1) was released by a reviewer and delivered"))

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='h2'><body>we can offer a discount</body></message>`)
	alice.Expect(bodyHas("is held for review (rule pricing-review, #2)"))
	if err := q.Decide(ctx, 2, false, "os:carol", "not approved"); err != nil {
		t.Fatal(err)
	}
	b := alice.Expect(isError("h2"))
	if b.ErrorCondition() != stanza.PolicyViolation || errText(b) != "rejected by a reviewer (rule pricing-review): not approved" {
		t.Fatalf("rejection: %v", b)
	}

	// The audit trail, in the queue and in the archive.
	waitOutcome(t, q, 1)
	it, evs, err := q.Get(ctx, 1)
	if err != nil || it.Outcome != "delivered" || len(evs) != 3 || evs[1].Actor != "os:carol" {
		t.Fatalf("item 1: %v %+v %+v", err, it, evs)
	}
	if it := waitOutcome(t, q, 2); it.Outcome != "bounced" {
		t.Fatalf("item 2: %+v", it)
	}
	arch := policyArchive(t, e.ts)
	rows, err := arch.Query(`SELECT action, rule, json_extract(detail, '$.review_id') FROM policy_actions WHERE action LIKE 'policy.%' AND action != 'policy.loaded' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for rows.Next() {
		var action, rule string
		var id int
		if err := rows.Scan(&action, &rule, &id); err != nil {
			t.Fatal(err)
		}
		trail = append(trail, action+" "+rule+" #"+string(rune('0'+id)))
	}
	rows.Close()
	want := "policy.hold pricing-review #1,policy.review.released pricing-review #1,policy.hold pricing-review #2,policy.review.rejected pricing-review #2"
	if strings.Join(trail, ",") != want {
		t.Fatalf("archive trail %v, want %s", trail, want)
	}
	var rule, verdict string
	if err := arch.QueryRow(`SELECT verdict, rule FROM stanzas WHERE stanza_id = 'h1'`).Scan(&verdict, &rule); err != nil {
		t.Fatal(err)
	}
	if verdict != "allow" || !strings.Contains(rule, "pricing-review") {
		t.Fatalf("archived crossing of the released message: %s %s", verdict, rule)
	}
}

// TestPolicyHoldTimeout: a held message nobody decides on gets the
// configured timeout outcome (here: released).
func TestPolicyHoldTimeout(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "", fastReview(50*time.Millisecond, "release"))
	alice := online(t, e.ts, "alice")
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='h1'><body>quote attached</body></message>`)
	alice.Expect(bodyHas("is held for review"))
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "h1" })
	// The server records the outcome just after delivering.
	it := waitOutcome(t, openQueue(t, e), 1)
	if it.DecidedBy != "timeout" || it.Status != review.Released || it.Outcome != "delivered" {
		t.Fatalf("item: %+v", it)
	}
}

// waitOutcome waits until the server has recorded what it did with item
// id (it does so right after delivering or bouncing).
func waitOutcome(t *testing.T, q *review.Store, id int64) review.Item {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		it, _, err := q.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if it.Outcome != "" {
			return it
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("outcome of #%d never recorded: %+v", id, it)
		}
	}
}
