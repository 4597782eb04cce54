package ops

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
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
			summary: "replace the store's pools, routes and hosts (and apps, in a file store) with a YAML file exported at the store's current version; everything is checked before anything is written",
			example: "ops --store consul://127.0.0.1:8500/v6pod import pods.yaml --dry-run",
			flags: func(fs *flag.FlagSet, o *opts) {
				allowReserved(fs, o)
				fs.BoolVar(&o.force, "force", false, "import even if the file's version is not the store's (overwriting the changes made since), or the file has none")
			}},
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
	st, err := c.store()
	if err != nil {
		return err
	}
	if _, ok := st.(*store.Consul); ok && len(in.Apps) > 0 {
		fmt.Fprintf(c.e.stderr, "ops: import: leaving out the %d apps of %s: a Consul store takes apps from the Consul catalog\n", len(in.Apps), name)
		in.Apps = nil
	}
	d, changed, err := c.update(func(d *model.Document) error {
		if err := importable(d, in, c.o.force); err != nil {
			return err
		}
		d.Pools, d.Routes, d.Hosts, d.Apps = in.Pools, in.Routes, in.Hosts, in.Apps
		return nil
	}, store.DropBad()) // replacing everything repairs bad keys too
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	c.done(d, changed, "imported %d pools, %d routes, %d hosts from %s", len(in.Pools), len(in.Routes), len(in.Hosts), name)
	return nil
}

// importable refuses to import a file over changes it does not hold: its
// version must be the store's (it was exported from the store as it is
// now), unless the store is empty or force is given.
func importable(cur, in *model.Document, force bool) error {
	empty := len(cur.Pools)+len(cur.Routes)+len(cur.Hosts)+len(cur.Apps) == 0
	switch {
	case force || empty || in.Version != 0 && in.Version == cur.Version:
		return nil
	case in.Version == 0:
		return fmt.Errorf("the file has no version, so it cannot tell whether it holds the store's latest changes (the store is at version %d); pass --force to replace the store with it anyway", cur.Version)
	default:
		return fmt.Errorf("conflict: the file is at version %d but the store is at version %d: it was exported before the latest changes, which importing it would undo; export again and edit that, or pass --force to overwrite them", in.Version, cur.Version)
	}
}
