package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/policy/review"
)

func newReviewCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "review",
		Short: "List, inspect, release or reject messages held for review",
		Long: `Policy rules with action hold keep outbound messages until a reviewer acts
(docs/policy.md#hold-and-review). The queue is review.db in the data
directory; the running server picks decisions up within policy.review_poll,
delivers released messages (they then cross the boundary and are archived)
and bounces rejected ones to their senders. Messages nobody decides on within
policy.review_timeout get policy.review_timeout_action. Every step is in the
item's audit trail (review show) and in the compliance archive.`,
	}
	cmd.AddCommand(newReviewListCmd(g), newReviewShowCmd(g), newReviewDecideCmd(g, true), newReviewDecideCmd(g, false))
	return cmd
}

// openReview opens the data directory's review queue; it must exist.
func openReview(ctx context.Context, g *globals) (*review.Store, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.DataDir, review.FileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no review queue in %s: the server creates it when it runs with a policy file", cfg.DataDir)
	}
	return review.Open(ctx, path)
}

func newReviewListCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the messages waiting for review (--all: every one ever held)",
		Example: "  gatehouse review list\n  gatehouse review list --all",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openReview(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			items, err := s.List(cmd.Context(), all)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if len(items) == 0 {
				fmt.Fprintln(w, "no messages waiting for review")
				return nil
			}
			for _, it := range items {
				fmt.Fprintf(w, "#%d  %s  %s → %s  rule %s  %s  %q\n", it.ID, it.Held.Format(time.RFC3339), it.Account, it.Peer,
					it.Rule, status(it), excerpt(it.Body, 60))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list decided messages too")
	return cmd
}

func status(it review.Item) string {
	s := string(it.Status)
	if it.Status != review.Pending {
		s += " by " + it.DecidedBy
		if !it.Done.IsZero() {
			s += ", " + it.Outcome
		} else {
			s += ", not carried out yet"
		}
	}
	return s
}

func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a review id (see gatehouse review list)", s)
	}
	return id, nil
}

func newReviewShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show a held message, the rules that held it and its audit trail",
		Example: "  gatehouse review show 12",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			s, err := openReview(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			it, evs, err := s.Get(cmd.Context(), id)
			if err != nil {
				return err
			}
			printItem(cmd.OutOrStdout(), it, evs)
			return nil
		},
	}
}

func printItem(w io.Writer, it review.Item, evs []review.Event) {
	fmt.Fprintf(w, "review:  #%d, %s\n", it.ID, status(it))
	fmt.Fprintf(w, "from:    %s\nto:      %s\n", it.Account, it.Peer)
	fmt.Fprintf(w, "held:    %s by rule %s (rules that acted: %s; policy %s)\n", it.Held.Format(time.RFC3339), it.Rule, it.Rules, it.PolicyVersion)
	fmt.Fprintf(w, "body:    %q\n", it.Body)
	fmt.Fprintf(w, "stanza:  %s\n", it.Stanza)
	for _, e := range evs {
		fmt.Fprintf(w, "event:   %s  %-9s by %s", e.At.Format(time.RFC3339), e.Action, e.Actor)
		if e.Note != "" {
			fmt.Fprintf(w, ": %s", e.Note)
		}
		fmt.Fprintln(w)
	}
}

func newReviewDecideCmd(g *globals, release bool) *cobra.Command {
	var note string
	use, short, done := "reject ID", "Reject a held message: its sender gets an error", "rejected"
	if release {
		use, short, done = "release ID", "Release a held message: it is delivered", "released"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  gatehouse review " + strings.Fields(use)[0] + " 12 --note \"checked with Legal\"",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			s, err := openReview(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			actor := cliActor()
			if err := s.Decide(cmd.Context(), id, release, actor.Name, note); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "#%d %s by %s; the server carries it out within policy.review_poll\n", id, done, actor.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "reason, kept in the audit trail (and told to the sender of a rejected message)")
	return cmd
}
