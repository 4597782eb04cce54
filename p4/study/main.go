package study

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Main is `ops maglev study`: it parses args (without the command words),
// runs the sweep, and prints a table or, with -o json, only a JSON array.
// It returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("maglev study", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := DefaultConfig()
	backends := fs.String("backends", joinInts(d.Backends), "backend counts N, comma-separated")
	minSize := fs.Uint64("min-size", d.MinSize, "smallest table size (rounded up to a prime)")
	maxRatio := fs.Uint64("max-ratio", d.MaxRatio, "largest table size about this many times N")
	flows := fs.Int("flows", d.Flows, "simulated flows per measurement")
	trials := fs.Int("trials", d.Trials, "backends added/removed per measurement, averaged")
	seed := fs.Uint64("seed", d.Seed, "random seed")
	output := fs.String("o", "table", "output: table or json")
	plot := fs.String("plot", "", "also write a PNG plot to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ops maglev study [flags]\n\nShare of Maglev slots and flows that move when one backend joins or leaves.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maglev study: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ns, err := parseInts(*backends)
	if err != nil {
		fmt.Fprintf(stderr, "maglev study: --backends: %v\n", err)
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "maglev study: -o %q: want table or json\n", *output)
		return 2
	}
	cfg := Config{Backends: ns, MinSize: *minSize, MaxRatio: *maxRatio, Flows: *flows, Trials: *trials, Seed: *seed}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "maglev %v\n", err)
		return 2
	}
	start := time.Now()
	rows := Study(cfg)
	if *plot != "" {
		f, err := os.Create(*plot)
		if err == nil {
			err = WritePNG(f, rows)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "maglev study: plot: %v\n", err)
			return 1
		}
	}
	if *output == "json" {
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintf(stderr, "maglev study: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backends\ttable_size\tM/N\top\tslots_moved\tflows_moved\tideal\tdisturbed\tmoved/ideal\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%s\t%.4f%%\t%.4f%%\t%.4f%%\t%.4f%%\t%.3f\t\n",
			r.Backends, r.TableSize, float64(r.TableSize)/float64(r.Backends), r.Op,
			100*r.SlotsMoved, 100*r.FlowsMoved, 100*r.Ideal, 100*r.Disturbed, r.FlowsMoved/r.Ideal)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\ndisturbed = slots that moved between two backends present both before and after (moves beyond the minimum)\n%d rows in %s\n", len(rows), time.Since(start).Round(time.Millisecond))
	return 0
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no backend counts")
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
