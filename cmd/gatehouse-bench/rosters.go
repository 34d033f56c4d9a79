package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/loadgen"
)

// prosodyRoster renders user i's roster as Prosody's internal storage
// keeps it (data/<host>/roster/<user>.dat, a Lua table): the same items
// `gatehouse-bench roster` makes through the protocol (ring neighbours,
// name = localpart, group "bench", subscription both).
func prosodyRoster(prefix, domain string, i, n, degree int) string {
	var b strings.Builder
	b.WriteString("return {\n\t[false] = {\n\t\t[\"pending\"] = {};\n\t\t[\"version\"] = 1;\n\t};\n")
	for _, j := range loadgen.Contacts(i, n, degree) {
		u := loadgen.UserName(prefix, j)
		fmt.Fprintf(&b, "\t[%q] = {\n\t\t[\"groups\"] = {\n\t\t\t[\"bench\"] = true;\n\t\t};\n\t\t[\"name\"] = %q;\n\t\t[\"subscription\"] = \"both\";\n\t};\n", u+"@"+domain, u)
	}
	b.WriteString("};\n")
	return b.String()
}

func prosodyRostersCmd() *cobra.Command {
	var dir, prefix, domain string
	var users, degree int
	cmd := &cobra.Command{
		Use:   "prosody-rosters",
		Short: "Write the bench rosters straight into Prosody's internal storage (fast path for run.sh)",
		Long: `Writes DIR/<prefix><i>.dat for i < users, each the Lua table Prosody's internal storage
keeps for a roster, with the items 'gatehouse-bench roster' makes through the protocol. DIR is
<data_path>/<host with '.' as %2e>/roster. Populating 1,200 rosters through the protocol takes
Prosody about 7 minutes (it rewrites the whole roster file on every change); 'gatehouse-bench
roster' afterwards verifies every roster over the protocol and completes anything missing.
Users must not be logged in while the files are written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if users < 2 || users > 100000 {
				return fmt.Errorf("users %d out of range [2, 100000]", users)
			}
			if degree <= 0 || degree%2 != 0 || degree >= users {
				return fmt.Errorf("degree %d must be even, > 0 and < users", degree)
			}
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return err
			}
			for i := 0; i < users; i++ {
				f := filepath.Join(dir, loadgen.UserName(prefix, i)+".dat")
				if err := os.WriteFile(f, []byte(prosodyRoster(prefix, domain, i, users, degree)), 0o640); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d rosters of %d contacts into %s\n", users, degree, dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "Prosody's roster directory for the host")
	f.StringVar(&prefix, "prefix", "idle", "account name prefix")
	f.StringVar(&domain, "domain", "localhost", "the accounts' domain")
	f.IntVar(&users, "users", 100, "users")
	f.IntVar(&degree, "degree", 20, "contacts per user (even)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
