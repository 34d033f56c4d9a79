// Command gatehouse is the Gatehouse server and its admin CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/config"
)

// globals holds the flags every command shares.
type globals struct {
	configFile string
	dataDir    string
}

// load reads the config file (or the embedded default) and applies --data.
func (g *globals) load() (*config.Config, error) {
	var cfg *config.Config
	var err error
	if g.configFile != "" {
		cfg, err = config.Load(g.configFile)
		if err != nil {
			return nil, err
		}
	} else {
		cfg = config.Default()
	}
	if g.dataDir != "" {
		cfg.DataDir = g.dataDir
	}
	return cfg, nil
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "Gatehouse: an XMPP server with a compliance gateway",
		Long: `Gatehouse is an enterprise XMPP server. Staff use any XMPP client; every stanza
that crosses between the company and outside networks passes one boundary
where policy is applied and the crossing is archived.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", "", "configuration file (YAML); default: the embedded default config")
	root.PersistentFlags().StringVar(&g.dataDir, "data", "", "data directory (overrides data_dir; default ./data)")
	root.AddCommand(newServeCmd(g), newUserCmd(g), newVersionCmd(), newConfigCmd(g))
	root.AddCommand(newPolicyCmd(g), newGroupCmd(g))
	root.AddCommand(newReviewCmd(g))
	root.AddCommand(newFederationCmd(g))
	root.AddCommand(newTransportCmd(g))
	root.AddCommand(newStatusCmd(g), newSessionCmd(g), newReloadCmd(g))
	root.AddCommand(newInitCmd(), newDoctorCmd(g), newReportCmd(g), newAuthCmd(g), newDirectoryCmd(g))
	root.AddCommand(newArchiveCmd(g))
	return root
}

func main() {
	ctx := context.Background()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
