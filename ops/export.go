package ops

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/v6pod/v6pod/internal/model"
)

func init() {
	register(
		&command{name: "export", max: 0, run: export,
			summary: "write the whole store as YAML (the file store's schema)",
			example: "ops --store consul://127.0.0.1:8500/v6pod export > pods.yaml\nops export -f pods.yaml",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.file, "f", "", "write to this file instead of stdout")
			}},
		&command{name: "import", args: "FILE|-", min: 1, max: 1, write: true, run: importDoc,
			summary: "replace the store's pools, routes and hosts (and apps, in a file store) with a YAML file; everything is checked before anything is written",
			example: "ops --store consul://127.0.0.1:8500/v6pod import pods.yaml --dry-run",
			flags:   allowReserved},
	)
}

func export(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	b, err := model.MarshalYAML(d)
	if err != nil {
		return err
	}
	if c.o.file == "" {
		_, err = c.e.stdout.Write(b)
		return err
	}
	if err := os.WriteFile(c.o.file, b, 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(c.e.stderr, "exported %d pools, %d routes, %d hosts to %s (version %d)\n", len(d.Pools), len(d.Routes), len(d.Hosts), c.o.file, d.Version)
	return nil
}

func importDoc(c *call) error {
	name := c.args[0]
	var b []byte
	var err error
	if name == "-" {
		name = "stdin"
		b, err = io.ReadAll(c.e.stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	// Everything is checked here, before the store is touched: the
	// schema and every value (ParseYAML), and the reserved ranges.
	in, err := model.ParseYAML(name, b)
	if err != nil {
		return fmt.Errorf("import: %w\nnothing was written", err)
	}
	if err := checkDocAddrs(in, c.o.allowReserved); err != nil {
		return fmt.Errorf("import: %s: %w\nnothing was written", name, err)
	}
	d, changed, err := c.update(func(d *model.Document) error {
		d.Pools, d.Routes, d.Hosts, d.Apps = in.Pools, in.Routes, in.Hosts, in.Apps
		return nil
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	c.done(d, changed, "imported %d pools, %d routes, %d hosts from %s", len(in.Pools), len(in.Routes), len(in.Hosts), name)
	return nil
}
