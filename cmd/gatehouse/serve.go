package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"gatehouse/logging/applog"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Long: `Run the server in the foreground. With no --config it serves the embedded
default: domain localhost, c2s on 127.0.0.1:5222 (STARTTLS) and 5223 (direct
TLS), a self-signed certificate and SQLite files in the data directory.

SIGINT/SIGTERM shut down gracefully (streams closed with system-shutdown);
SIGHUP reloads the configuration file's reloadable settings.`,
		Example: `  gatehouse serve
  gatehouse serve -c /etc/gatehouse/gatehouse.yaml --data /var/lib/gatehouse`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log, closer, err := applog.New(cfg.Log.Level, cfg.Log.Format, cfg.Log.File)
			if err != nil {
				return err
			}
			defer closer.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			srv.SetConfigLoader(g.load)
			if err := srv.Listen(); err != nil {
				return err
			}
			log.WithFields(map[string]any{"version": server.Version, "hosts": cfg.Hosts, "data": cfg.DataDir, "go": runtime.Version()}).Info("gatehouse starting")
			go reloadOnHUP(ctx, g, srv)
			return srv.Run(ctx)
		},
	}
}

func reloadOnHUP(ctx context.Context, g *globals, srv *server.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cfg, err := g.load()
			if err != nil {
				fmt.Fprintln(os.Stderr, "gatehouse: reload refused, keeping the running config:", err)
				continue
			}
			_ = srv.Reload(cfg) // the server logs what failed
		}
	}
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:     "check",
		Short:   "Validate the configuration file and exit",
		Example: "  gatehouse config check -c gatehouse.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.load(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration OK")
			return nil
		},
	}, &cobra.Command{
		Use:     "default",
		Short:   "Print the embedded default configuration",
		Example: "  gatehouse config default > gatehouse.yaml",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			_, _ = cmd.OutOrStdout().Write(config.DefaultYAML())
		},
	})
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  gatehouse version",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "gatehouse %s (%s %s/%s)\n", server.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
