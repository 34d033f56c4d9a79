package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v3"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
)

// initOptions are the choices `gatehouse init` makes for a production
// configuration.
type initOptions struct {
	domain     string
	dataDir    string
	certFile   string
	keyFile    string
	federation bool
	out        string
	force      bool
}

func newInitCmd() *cobra.Command {
	o := initOptions{}
	c := &cobra.Command{
		Use:   "init DOMAIN",
		Short: "Write a commented production configuration for DOMAIN",
		Long: `Writes the full, commented configuration (every key, with what it does) set up
for production: DOMAIN as the only host, client listeners on all interfaces, the
data directory under /var/lib, and optionally a real certificate and federation.
Review it, then start with 'gatehouse serve -c FILE' and check with
'gatehouse doctor -c FILE'. An existing file is not overwritten without --force.`,
		Example: `  gatehouse init example.com
  gatehouse init example.com --cert /etc/letsencrypt/live/example.com/fullchain.pem \
      --key /etc/letsencrypt/live/example.com/privkey.pem --federation -o /etc/gatehouse/gatehouse.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.domain = args[0]
			doc, err := initConfig(o)
			if err != nil {
				return err
			}
			if o.out == "-" {
				_, err := cmd.OutOrStdout().Write(doc)
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if o.force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(o.out, flags, 0o640)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; use --force to overwrite it or -o to write elsewhere", o.out)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(doc); err != nil {
				_ = f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s for %s\nnext: gatehouse doctor -c %s, then gatehouse serve -c %s\n", o.out, o.domain, o.out, o.out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/gatehouse", "data directory the server will use")
	f.StringVar(&o.certFile, "cert", "", "PEM certificate chain for DOMAIN (empty: a self-signed one is generated)")
	f.StringVar(&o.keyFile, "key", "", "PEM private key for --cert")
	f.BoolVar(&o.federation, "federation", false, "enable server-to-server federation on all interfaces (allowlist mode, empty list)")
	f.StringVarP(&o.out, "output", "o", "gatehouse.yaml", "file to write, or - for standard output")
	f.BoolVar(&o.force, "force", false, "overwrite an existing file")
	return c
}

// initConfig edits the embedded default document (comments kept) and
// checks that the result validates.
func initConfig(o initOptions) ([]byte, error) {
	d, err := jid.New("", o.domain, "")
	if err != nil || d.Domainpart() != o.domain || !strings.Contains(o.domain, ".") {
		return nil, fmt.Errorf("%q is not a fully qualified domain name such as example.com", o.domain)
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("give both --cert and --key, or neither")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(config.DefaultYAML(), &root); err != nil {
		return nil, fmt.Errorf("the embedded default configuration: %w", err)
	}
	doc := root.Content[0]
	set := func(path string, v *yaml.Node) error {
		n := doc
		keys := strings.Split(path, ".")
		for i, k := range keys {
			next := lookup(n, k)
			if next == nil {
				return fmt.Errorf("init: the default configuration has no %s", path)
			}
			if i == len(keys)-1 {
				v.HeadComment, v.LineComment, v.FootComment = next.HeadComment, next.LineComment, next.FootComment
				*next = *v
				return nil
			}
			n = next
		}
		return nil
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	boolean := func(b bool) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(b)}
	}
	list := func(items ...string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, it := range items {
			n.Content = append(n.Content, str(it))
		}
		return n
	}
	type edit struct {
		path string
		v    *yaml.Node
	}
	edits := []edit{
		{"hosts", list(o.domain)},
		{"data_dir", str(o.dataDir)},
		{"c2s.listen", list("0.0.0.0:5222", "[::]:5222")},
		{"c2s.listen_tls", list("0.0.0.0:5223", "[::]:5223")},
		// Upload slots are fetched by remote clients: serve them outside.
		{"upload.listen", str("0.0.0.0:5443")},
		{"tls.cert_file", str(o.certFile)},
		{"tls.key_file", str(o.keyFile)},
	}
	if o.federation {
		edits = append(edits,
			edit{"s2s.enabled", boolean(true)},
			edit{"s2s.listen", list("0.0.0.0:5269", "[::]:5269")},
			edit{"s2s.listen_tls", list("0.0.0.0:5270", "[::]:5270")})
	}
	for _, e := range edits {
		if err := set(e.path, e.v); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Gatehouse configuration for %s, written by `gatehouse init`.\n#\n", o.domain)
	fmt.Fprintf(&buf, "# Before starting: create the DNS SRV records (docs/federation.md), make sure\n")
	fmt.Fprintf(&buf, "# %s exists and belongs to the server's user, and run `gatehouse doctor`.\n\n", o.dataDir)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	cfg, err := config.Parse(buf.Bytes(), "gatehouse.yaml")
	if err != nil {
		return nil, fmt.Errorf("init: the written configuration does not validate: %w", err)
	}
	if len(cfg.Hosts) != 1 || cfg.Hosts[0] != o.domain {
		return nil, fmt.Errorf("init: hosts came out as %v", cfg.Hosts)
	}
	return buf.Bytes(), nil
}

// lookup returns the value node of key in mapping n.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
