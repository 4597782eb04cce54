package ops

import (
	"fmt"
	"io"
	"slices"

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
	return study.Main(args, c.e.stdout, c.e.stderr)
}
