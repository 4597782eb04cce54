package ops

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/v6pod/v6pod/p4/study"
)

func init() {
	register(&command{name: "maglev study", args: "[flags]", raw: maglevStudy,
		summary: "how many Maglev slots and flows move when one backend joins or leaves, over table sizes (no store needed)",
		example: "ops maglev study --backends 4,16,64 -o json\nops maglev study --plot study.png"})
}

// maglevStudy hands its arguments to p4/study, adding the example to its
// help.
func maglevStudy(c *call, args []string) int {
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" }) {
		cmd, _ := lookup([]string{"maglev", "study"})
		fmt.Fprintf(c.e.stdout, "%s\n\nexample:\n  ops maglev study --backends 4,16,64 -o json\n  ops maglev study --plot study.png\n\n", cmd.summary)
		study.Main([]string{"-h"}, io.Discard, c.e.stdout)
		return ExitOK
	}
	var errb bytes.Buffer
	code := study.Main(args, c.e.stdout, &errb)
	if code == ExitOK {
		io.Copy(c.e.stderr, &errb)
		if plot := flagValue(args, "plot"); plot != "" {
			fmt.Fprintf(c.e.stderr, "ops: maglev study: wrote the plot to %s\n", plot)
		}
		return code
	}
	// Errors as every other command prints them: "ops: ", one line, and
	// for a usage error the pointer to --help rather than the help.
	first, _, _ := strings.Cut(strings.TrimSpace(errb.String()), "\n")
	if !strings.HasPrefix(first, "maglev ") {
		first = "maglev study: " + first
	}
	fmt.Fprintf(c.e.stderr, "ops: %s\n", first)
	if code == ExitUsage {
		fmt.Fprintln(c.e.stderr, "see 'ops maglev study --help'")
	}
	return code
}

// flagValue returns the value of --name in args ("--name V", "--name=V",
// one dash or two), or "".
func flagValue(args []string, name string) string {
	val := ""
	for i, a := range args {
		if a == "--" {
			break
		}
		k, v, hasV := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || k != name {
			continue
		}
		if hasV {
			val = v
		} else if i+1 < len(args) {
			val = args[i+1]
		}
	}
	return val
}
