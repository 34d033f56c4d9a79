package server_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// policyArchive opens the compliance archive read-only, as a reviewer
// does, to see what the policy's decisions left there.
func policyArchive(t *testing.T, ts *xmpptest.TestServer) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(ts.Config.DataDir, ts.Config.Archive.File)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestPolicyBarriers: an information barrier between two groups of local
// accounts, over real sockets. Research and Trading cannot message each
// other either way; Legal may talk to Trading but is flagged; every
// barrier decision is a policy row in the archive.
func TestPolicyBarriers(t *testing.T) {
	e := startPolicyServer(t, "../../testdata/policy/barriers.yaml", "")
	ctx := context.Background()
	db := e.ts.DB()
	for _, u := range []string{"rita", "tom", "lena"} {
		e.ts.AddUser(t, u, pw)
	}
	for g, u := range map[string]string{"research": "rita", "trading": "tom", "legal": "lena"} {
		if err := db.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		if err := db.AddToGroup(ctx, g, u); err != nil {
			t.Fatal(err)
		}
	}
	rita, tom, lena := online(t, e.ts, "rita"), online(t, e.ts, "tom"), online(t, e.ts, "lena")
	compliance := online(t, e.ts, "compliance")

	rita.Send(`<message to='tom@localhost' type='chat' id='r1'><body>the upgrade is out tomorrow</body></message>`)
	b := rita.Expect(isError("r1"))
	if b.ErrorCondition() != stanza.NotAllowed || errText(b) != "An information barrier separates Research and Trading. (rule research-trading)" {
		t.Fatalf("rita to tom: %v", b)
	}
	tom.Send(`<message to='rita@localhost/desk' type='chat' id='t1'><body>any news?</body></message>`)
	if b := tom.Expect(isError("t1")); b.ErrorCondition() != stanza.NotAllowed {
		t.Fatalf("tom to rita's full JID: %v", b)
	}
	n := compliance.Expect(bodyHas("Rule research-trading (barrier, deny)"))
	if !strings.Contains(n.Body(), "Information barrier between groups research and trading.") {
		t.Fatalf("compliance notice: %q", n.Body())
	}

	lena.Send(`<message to='tom@localhost' type='chat' id='l1'><body>please keep records</body></message>`)
	tom.Expect(bodyIs("please keep records"))
	rita.Send(`<message to='lena@localhost' type='chat' id='r2'><body>hello legal</body></message>`)
	lena.Expect(bodyIs("hello legal"))
	// Ordering: tom's stream delivered lena's message after anything
	// rita's could have produced.
	tom.ExpectNone(bodyIs("the upgrade is out tomorrow"), 20*time.Millisecond)
	rita.ExpectNone(bodyIs("any news?"), 20*time.Millisecond)

	arch := policyArchive(t, e.ts)
	rows, err := arch.Query(`SELECT rule, policy_version, account, peer, json_extract(detail, '$.verdict') FROM policy_actions WHERE action = 'policy.barrier' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var rule, version, account, peer, verdict string
		if err := rows.Scan(&rule, &version, &account, &peer, &verdict); err != nil {
			t.Fatal(err)
		}
		if version != e.ts.PolicyVersion() {
			t.Errorf("row policy_version %q, want %q", version, e.ts.PolicyVersion())
		}
		got = append(got, strings.Join([]string{verdict, rule, account, peer}, " "))
	}
	want := []string{
		"deny research-trading rita@localhost tom@localhost",
		"deny research-trading tom@localhost rita@localhost",
		"allow legal-trading-review lena@localhost tom@localhost",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("archive barrier rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
