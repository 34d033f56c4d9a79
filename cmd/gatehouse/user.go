package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/storage"
)

// minPasswordLen is the shortest password accepted from the CLI.
const minPasswordLen = 8

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage accounts",
		Long: `Manage accounts in the data directory. Only salted SCRAM verifiers are stored
(SCRAM-SHA-1, -256, -512), never the password.`,
	}
	var passwordFile, listOut string
	addPW := func(c *cobra.Command) {
		c.Flags().StringVar(&passwordFile, "password-file", "", "read the password from the first line of this file instead of prompting")
	}
	add := &cobra.Command{
		Use:   "add USER",
		Short: "Create an account",
		Example: `  gatehouse user add alice            # prompts for the password twice
  gatehouse user add bob --password-file bob.pw
  echo 's3cret-pass' | gatehouse user add carol`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, db, user, err := openForUser(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			pw, err := readPassword(cmd, passwordFile, true)
			if err != nil {
				return err
			}
			creds, err := auth.NewCredentials(pw, cfg.Auth.SCRAMIterations)
			if err != nil {
				return err
			}
			if exists, err := db.Exists(cmd.Context(), user); err != nil {
				return err
			} else if !exists {
				if err := auditCLI(cmd.Context(), cfg, "user.add", user+"@"+cfg.Hosts[0]); err != nil {
					return err
				}
			}
			if err := db.CreateUser(cmd.Context(), user, creds); err != nil {
				if errors.Is(err, storage.ErrUserExists) {
					return fmt.Errorf("user %q already exists (use 'gatehouse user passwd %s' to change the password)", user, user)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s@%s\n", user, cfg.Hosts[0])
			return nil
		},
	}
	addPW(add)
	passwd := &cobra.Command{
		Use:     "passwd USER",
		Short:   "Change an account's password",
		Example: `  gatehouse user passwd alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, db, user, err := openForUser(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			pw, err := readPassword(cmd, passwordFile, true)
			if err != nil {
				return err
			}
			creds, err := auth.NewCredentials(pw, cfg.Auth.SCRAMIterations)
			if err != nil {
				return err
			}
			if exists, err := db.Exists(cmd.Context(), user); err != nil {
				return err
			} else if exists {
				if err := auditCLI(cmd.Context(), cfg, "user.passwd", user+"@"+cfg.Hosts[0]); err != nil {
					return err
				}
			}
			if err := db.SetCredentials(cmd.Context(), user, creds); err != nil {
				if errors.Is(err, storage.ErrNoUser) {
					return fmt.Errorf("no user %q (see 'gatehouse user list')", user)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password changed for %s\n", user)
			return nil
		},
	}
	addPW(passwd)
	del := &cobra.Command{
		Use:     "delete USER",
		Short:   "Delete an account and all its data (roster, offline messages, vCard, message history)",
		Example: `  gatehouse user delete alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			// A running server deletes the account itself, so that its
			// sessions end and nothing of it stays cached.
			var res server.DeleteUserResult
			if ran, err := userViaServer(cmd, cfg, args[0], "delete", &res); ran {
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", strings.SplitN(res.Deleted, "@", 2)[0])
					printKicked(cmd, res.Kicked)
				}
				return err
			}
			cfg, db, user, err := userOnDisk(cmd, g, args[0], "delete")
			if err != nil {
				return err
			}
			defer db.Close()
			quiet := logrus.New()
			quiet.SetOutput(io.Discard)
			if err := server.DeleteAccount(cmd.Context(), cfg, db, user, quiet); err != nil {
				if errors.Is(err, storage.ErrNoUser) {
					return fmt.Errorf("no user %q (see 'gatehouse user list')", user)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", user)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts",
		Example: `  gatehouse user list
  gatehouse user list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			db, err := server.OpenDB(cmd.Context(), cfg.DataDir)
			if err != nil {
				return err
			}
			defer db.Close()
			users, err := db.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			jids := make([]string, len(users))
			for i, u := range users {
				jids[i] = u + "@" + cfg.Hosts[0]
			}
			return render(cmd.OutOrStdout(), listOut, jids, func(w *tabwriter.Writer) {
				for _, j := range jids {
					fmt.Fprintln(w, j)
				}
			})
		},
	}
	outputFlag(list, &listOut)
	cmd.AddCommand(add, passwd, del, list, newSetManagerCmd(g), newUserShowCmd(g))
	cmd.AddCommand(newUserLockCmds(g)...)
	return cmd
}

// openForUser loads config, opens the database and normalises the user
// name (a bare localpart or user@host on a hosted domain).
func openForUser(cmd *cobra.Command, g *globals, name string) (*config.Config, *storage.DB, string, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, "", err
	}
	user, err := normaliseUser(cfg, name)
	if err != nil {
		return nil, nil, "", err
	}
	db, err := server.OpenDB(cmd.Context(), cfg.DataDir)
	if err != nil {
		return nil, nil, "", err
	}
	return cfg, db, user, nil
}

func normaliseUser(cfg *config.Config, name string) (string, error) {
	local, domain := name, cfg.Hosts[0]
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		local, domain = name[:i], name[i+1:]
	}
	j, err := jid.New(local, domain, "")
	if err != nil || j.Localpart() == "" {
		return "", fmt.Errorf("%q is not a valid user name: %v", name, err)
	}
	for _, h := range cfg.Hosts {
		if h == j.Domainpart() {
			return j.Localpart(), nil
		}
	}
	return "", fmt.Errorf("%s is not a hosted domain (hosts: %s)", j.Domainpart(), strings.Join(cfg.Hosts, ", "))
}

// readPassword reads from --password-file, a terminal prompt (twice), or
// the first line of standard input.
func readPassword(cmd *cobra.Command, file string, confirm bool) (string, error) {
	var pw string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		pw = strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		pw = string(b)
		if confirm {
			fmt.Fprint(cmd.ErrOrStderr(), "Repeat password: ")
			b2, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(cmd.ErrOrStderr())
			if err != nil {
				return "", err
			}
			if string(b2) != pw {
				return "", errors.New("the passwords do not match")
			}
		}
	default:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if len([]rune(pw)) < minPasswordLen {
		return "", fmt.Errorf("the password must have at least %d characters", minPasswordLen)
	}
	return pw, nil
}
