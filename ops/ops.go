// Package ops is the operators' command line of a pod: pools, routes,
// address rotation, edges, status, and import/export of the whole store,
// over the file store or Consul KV (internal/store).
package ops

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

// Exit codes.
const (
	ExitOK    = 0 // done
	ExitFail  = 1 // failed: the store refused, a conflict, a bad object
	ExitUsage = 2 // the command line is wrong
)

// EnvStore names the variable that gives the store when --store is absent.
const EnvStore = "V6POD_STORE"

// Main runs one ops command line (without the program name) and returns
// the exit code. Output goes to stdout, errors and progress to stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}, args)
}

// env is what a command runs with: the streams, the global settings, and
// the hooks tests use.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	// Global flags.
	storeURL string
	consul   string
	timeout  time.Duration

	// afterStep, when set, runs after each completed step of a rotation;
	// an error stops the rotation there (tests inject interruptions).
	afterStep func(step int) error
	// sleep waits for d or until ctx ends (tests shorten it).
	sleep func(ctx context.Context, d time.Duration) error
	// parseOnly stops after the command line is parsed (README test).
	parseOnly bool
}

// usageError is a wrong command line: exit code 2. help names the
// command whose --help explains it ("" for ops itself).
type usageError struct{ msg, help string }

func (e *usageError) Error() string { return e.msg }

// hintError is an error followed by what to do about it, also printed when
// the command was interrupted.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

// ExitInterrupted is the exit code after Ctrl-C (128 + SIGINT).
const ExitInterrupted = 130

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// command is one `ops <noun> <verb>`.
type command struct {
	name    string // "pool drain"
	args    string // "POOL ADDR..."
	min     int    // positional arguments, at least
	max     int    // at most; -1: any number
	summary string
	example string
	read    bool                       // has -o table|json
	write   bool                       // has --dry-run
	flags   func(*flag.FlagSet, *opts) // the command's own flags
	run     func(*call) error          // does it
	raw     func(*call, []string) int  // takes its arguments unparsed
	prep    func([]string) []string    // rewrites the arguments before parsing
}

// opts holds every command's flag values; each command registers the
// ones it uses.
type opts struct {
	output        string
	dryRun        bool
	allowReserved bool
	force         bool

	edge, site, state string
	weight            uint
	v4, v6            listFlag

	pools     listFlag
	answers   int
	ttl       uint
	shard     string
	shardSize int

	out, in       listFlag
	resume, abort bool
	wait          time.Duration
	waitSet       bool

	file      string
	drainFile string

	set map[string]bool // flags given on the command line
}

// commands is the command table, in the order help lists them.
var commands []*command

func register(cs ...*command) { commands = append(commands, cs...) }

func lookup(words []string) (*command, int) {
	for n := min(2, len(words)); n > 0; n-- {
		name := strings.Join(words[:n], " ")
		for _, c := range commands {
			if c.name == name {
				return c, n
			}
		}
	}
	return nil, 0
}

// call is one run of a command.
type call struct {
	ctx  context.Context
	e    *env
	cmd  *command
	o    *opts
	args []string
	st   store.Store
}

func run(ctx context.Context, e *env, args []string) int {
	if e.sleep == nil {
		e.sleep = sleepCtx
	}
	err := dispatch(ctx, e, args)
	var ue *usageError
	var code exitCode
	var hint *hintError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &code):
		return int(code)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(e.stderr, "ops: interrupted")
		if errors.As(err, &hint) {
			fmt.Fprintln(e.stderr, hint.hint)
		}
		return ExitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "ops: %v\n", err)
		if ue.help != "" {
			fmt.Fprintf(e.stderr, "see 'ops %s --help'\n", ue.help)
		} else {
			fmt.Fprintln(e.stderr, "see 'ops --help'")
		}
		return ExitUsage
	default:
		fmt.Fprintf(e.stderr, "ops: %v\n", err)
		return ExitFail
	}
}

func globalFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.storeURL, "store", e.storeURL, "the store: file:///path.yaml or consul://host:port/prefix (default $"+EnvStore+")")
	fs.StringVar(&e.consul, "consul", e.consul, "Consul agent for the catalog and edges/ keys when the store is a file: host:port or consul://host:port/prefix")
	fs.DurationVar(&e.timeout, "timeout", e.timeout, "time limit of each store operation")
}

func dispatch(ctx context.Context, e *env, args []string) error {
	e.timeout = 30 * time.Second
	fs := flag.NewFlagSet("ops", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	globalFlags(fs, e)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(e.stdout)
			return err
		}
		return usagef("%v", err)
	}
	words := fs.Args()
	if len(words) == 0 || words[0] == "help" {
		if len(words) > 1 {
			return dispatch(ctx, e, append(words[1:], "--help"))
		}
		mainUsage(e.stdout)
		if len(words) == 0 {
			return exitCode(ExitUsage)
		}
		return nil
	}
	cmd, n := lookup(words)
	if cmd == nil {
		return unknown(e, words)
	}
	c := &call{ctx: ctx, e: e, cmd: cmd, o: &opts{}}
	if cmd.raw != nil {
		if e.parseOnly {
			return nil
		}
		if code := cmd.raw(c, words[n:]); code != 0 {
			return exitCode(code)
		}
		return nil
	}
	cfs := flag.NewFlagSet("ops "+cmd.name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	globalFlags(cfs, e)
	if cmd.read {
		cfs.StringVar(&c.o.output, "o", "table", "output: table or json")
	}
	if cmd.write {
		cfs.BoolVar(&c.o.dryRun, "dry-run", false, "print what would change, write nothing")
	}
	if cmd.flags != nil {
		cmd.flags(cfs, c.o)
	}
	rest := words[n:]
	if cmd.prep != nil {
		rest = cmd.prep(rest)
	}
	pos, err := parseInterleaved(cfs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(e.stdout, cmd, cfs)
		return err
	}
	if err != nil {
		return &usageError{fmt.Sprintf("%s: %v", cmd.name, err), cmd.name}
	}
	c.o.set = map[string]bool{}
	cfs.Visit(func(f *flag.Flag) { c.o.set[f.Name] = true })
	if len(pos) < cmd.min || cmd.max >= 0 && len(pos) > cmd.max {
		want := cmd.args
		if want == "" {
			want = "no arguments"
		}
		return &usageError{fmt.Sprintf("%s: want %s, got %d argument(s)", cmd.name, want, len(pos)), cmd.name}
	}
	if cmd.read && c.o.output != "table" && c.o.output != "json" {
		return &usageError{fmt.Sprintf("%s: -o %q: want table or json", cmd.name, c.o.output), cmd.name}
	}
	c.args = pos
	if e.parseOnly {
		return nil
	}
	defer func() {
		if c.st != nil {
			c.st.Close()
		}
	}()
	err = cmd.run(c)
	if ue, ok := err.(*usageError); ok && ue.help == "" {
		ue.help = cmd.name
	}
	return err
}

// exitCode ends a command with that code, having printed its own message.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

func unknown(e *env, words []string) error {
	var verbs []string
	var mine []*command
	for _, c := range commands {
		if noun, verb, ok := strings.Cut(c.name, " "); ok && noun == words[0] {
			verbs = append(verbs, verb)
			mine = append(mine, c)
		}
	}
	if len(verbs) > 0 {
		help := len(words) > 1 && (words[1] == "-h" || words[1] == "--help" || words[1] == "-help")
		if len(words) == 1 || help {
			w := e.stderr
			if help {
				w = e.stdout
			}
			fmt.Fprintf(w, "usage: ops %s <verb> [flags] [args]\n\n", words[0])
			for _, c := range mine {
				fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
			}
			fmt.Fprintf(w, "\nexample:\n  %s\n", strings.Split(strings.TrimSpace(mine[0].example), "\n")[0])
			if help {
				return flag.ErrHelp
			}
			return usagef("%s: which one? %s", words[0], strings.Join(verbs, ", "))
		}
		return &usageError{fmt.Sprintf("%s %s: unknown command; %s has: %s", words[0], words[1], words[0], strings.Join(verbs, ", ")), words[0]}
	}
	return usagef("%s: unknown command", words[0])
}

// parseInterleaved parses flags that may come before, between and after
// the positional arguments; "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `usage: ops [--store URL] [--consul ADDR] <noun> <verb> [flags] [args]

The operators' command line of a v6pod: pools, routes, rotations, edges.
The store is --store or $V6POD_STORE: file:///path.yaml or consul://host:port/prefix.

commands:
`)
	rank := func(c *command) int {
		noun, _, _ := strings.Cut(c.name, " ")
		return slices.Index([]string{"pool", "route", "status", "edge", "export", "import", "maglev"}, noun)
	}
	sorted := slices.Clone(commands)
	slices.SortStableFunc(sorted, func(a, b *command) int { return rank(a) - rank(b) })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
example:
  ops --store consul://127.0.0.1:8500/v6pod pool list
  ops pool drain edge-ams-01 203.0.113.2 --dry-run

"ops <noun> <verb> --help" explains each command. Exit codes: 0 done, 1 failed, 2 usage.
`)
}

func commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: ops %s [flags] %s\n\n%s\n\nexample:\n", cmd.name, cmd.args, cmd.summary)
	for _, line := range strings.Split(strings.TrimSpace(cmd.example), "\n") {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(line))
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// store opens the store once.
func (c *call) store() (store.Store, error) {
	if c.st != nil {
		return c.st, nil
	}
	u := c.e.storeURL
	if u == "" {
		u = c.e.getenv(EnvStore)
	}
	if u == "" {
		return nil, usagef("no store: give --store URL or set %s (file:///path.yaml or consul://host:port/prefix)", EnvStore)
	}
	st, err := store.Open(u, store.Options{})
	if err != nil {
		return nil, usagef("%v", err)
	}
	c.st = st
	return st, nil
}

// missingFile returns the path of a file store whose file does not exist
// yet, or "".
func (c *call) missingFile() string {
	if f, ok := c.st.(*store.File); ok && !f.Exists() {
		return f.Path()
	}
	return ""
}

func (c *call) opCtx() (context.Context, context.CancelFunc) {
	if c.e.timeout <= 0 {
		return context.WithCancel(c.ctx)
	}
	return context.WithTimeout(c.ctx, c.e.timeout)
}

// load reads the current document for a view. A missing store file is
// an empty store, with a warning. Bad keys (Consul) are left out, each
// with a warning naming it: the rest is shown, and the repairs work.
func (c *call) load() (*model.Document, error) {
	d, probs, err := c.loadPartial()
	if err != nil {
		return nil, err
	}
	if path := c.missingFile(); path != "" {
		fmt.Fprintf(c.e.stderr, "ops: warning: store file %s does not exist; showing an empty store\n", path)
	}
	for _, p := range probs {
		fmt.Fprintf(c.e.stderr, "ops: warning: %s; left out\n", p)
	}
	if len(probs) > 0 {
		fmt.Fprintln(c.e.stderr, "ops: warning: the store holds bad data, which razor refuses: repair it with ops pool delete / ops route delete of the bad key, or ops import")
	}
	return d, nil
}

func (c *call) loadPartial() (*model.Document, []store.Problem, error) {
	st, err := c.store()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	return store.LoadPartial(ctx, st)
}

// update changes the store with check-and-set; opts go to Store.Update.
// With --dry-run the store runs every check and writes nothing, and the
// diff is printed. A conflict (someone wrote in between) is retried: fn
// runs again on the fresh data. It reports whether anything changed, and
// the document as written (nil for a dry run).
func (c *call) update(fn func(*model.Document) error, opts ...store.UpdateOption) (*model.Document, bool, error) {
	st, err := c.store()
	if err != nil {
		return nil, false, err
	}
	var before, after *model.Document
	apply := func(d *model.Document) error {
		before = d.Clone()
		if err := fn(d); err != nil {
			return err
		}
		after = d.Clone()
		after.Normalize()
		return nil
	}
	if c.o.dryRun {
		opts = append(opts, store.DryRun())
	}
	creating := c.missingFile()
	var d *model.Document
	for try := 1; ; try++ {
		ctx, cancel := c.opCtx()
		d, err = st.Update(ctx, apply, opts...)
		cancel()
		if !errors.Is(err, store.ErrConflict) || try == conflictTries {
			break
		}
		// Someone else wrote in between: back off a little (jittered, so
		// two operators do not collide again) and redo the change.
		if err := c.e.sleep(c.ctx, time.Duration(try)*50*time.Millisecond+time.Duration(rand.Int64N(int64(50*time.Millisecond)))); err != nil {
			return nil, false, err
		}
	}
	if errors.Is(err, store.ErrConflict) {
		return nil, false, fmt.Errorf("conflict: others kept writing to %s at the same time (%d tries); nothing of this change was written; run it again", st, conflictTries)
	}
	var bad *store.BadDataError
	if errors.As(err, &bad) {
		return nil, false, &hintError{err, repairHint(bad.Problems)}
	}
	if err != nil {
		return nil, false, err
	}
	same, err := model.Equal(before, after)
	if err != nil {
		return nil, false, err
	}
	if c.o.dryRun {
		diff, err := docDiff(before, after)
		if err != nil {
			return nil, false, err
		}
		if diff == "" {
			fmt.Fprintln(c.e.stdout, "dry run: no change")
		} else {
			fmt.Fprintf(c.e.stdout, "%sdry run: nothing written\n", diff)
		}
		return nil, !same, nil
	}
	if creating != "" && !same {
		fmt.Fprintf(c.e.stderr, "ops: created the store file %s\n", creating)
	}
	return d, !same, nil
}

// repairHint says how to repair bad keys: delete the pool or route the
// key holds, or import a good document over everything.
func repairHint(probs []store.Problem) string {
	var cmds []string
	for _, p := range probs {
		switch p.Kind {
		case "pools":
			cmds = append(cmds, "ops pool delete "+p.Name)
		case "routes":
			cmds = append(cmds, "ops route delete "+p.Name)
		}
	}
	cmds = append(cmds, "ops export > pods.yaml (the good part), fix it, ops import pods.yaml")
	return "repair the store first: " + strings.Join(cmds, "; or ")
}

// conflictTries is how often update tries a change that keeps meeting
// conflicts.
const conflictTries = 3

// done prints the result of a write (nothing for a dry run).
func (c *call) done(d *model.Document, changed bool, format string, args ...any) {
	if d == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if !changed {
		fmt.Fprintf(c.e.stdout, "%s: no change; nothing written\n", msg)
		return
	}
	fmt.Fprintf(c.e.stdout, "%s (version %d)\n", msg, d.Version)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// listFlag is a repeatable flag of comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
