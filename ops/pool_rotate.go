package ops

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/model"
)

// The rotation's steps. Each is one check-and-set write (or the wait),
// each is idempotent, and what was done is recorded in Pool.Rotation, so
// an interruption anywhere leaves a consistent store and --resume picks up
// where it stopped.
const (
	stepStart  = 1 // record the rotation and add the incoming addresses
	stepDrain  = 2 // drain the outgoing addresses, record when
	stepWait   = 3 // wait twice the largest TTL of the routes using the pool
	stepFinish = 4 // remove the outgoing addresses, clear the record
)

func init() {
	register(&command{name: "pool rotate", args: "POOL --out ADDR... [--in ADDR...]", min: 1, max: 1, write: true, run: poolRotate,
		summary: "replace addresses safely: add the new ones, drain the old ones, wait twice the largest route TTL, remove the old ones; --resume finishes an interrupted rotation",
		example: "ops pool rotate edge-ams-01 --out 203.0.113.2 --in 203.0.113.9 --allow-reserved\nops pool rotate --resume edge-ams-01",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.Var(&o.out, "out", "addresses to take out (comma-separated, repeated, or several after --out)")
			fs.Var(&o.in, "in", "addresses to bring in (comma-separated, repeated, or several after --in)")
			fs.BoolVar(&o.resume, "resume", false, "finish the rotation recorded in the pool")
			fs.BoolVar(&o.abort, "abort", false, "give up the recorded rotation: undrain the outgoing addresses, keep the incoming ones")
			fs.Func("wait", "wait this long after draining instead of twice the largest TTL (e.g. 0s in a lab); recorded, so --resume honours it", func(s string) error {
				d, err := time.ParseDuration(s)
				if err != nil || d < 0 {
					return fmt.Errorf("want a duration such as 90s")
				}
				o.wait, o.waitSet = d, true
				return nil
			})
			allowReserved(fs, o)
		},
		prep: rotateArgs,
	})
}

// rotateArgs turns "--out A B --in C" into "--out A --out B --in C": the
// values after --out or --in that parse as addresses belong to it.
func rotateArgs(args []string) []string {
	var out []string
	cur, first := "", false
	for i, a := range args {
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case a == "--out" || a == "-out" || a == "--in" || a == "-in":
			cur, first = strings.TrimLeft(a, "-"), true
			out = append(out, "--"+cur)
			continue
		case cur != "" && first:
			first = false
			out = append(out, a)
			continue
		case cur != "" && !strings.HasPrefix(a, "-"):
			if _, err := addr.Parse(strings.Split(a, ",")[0]); err == nil {
				out = append(out, "--"+cur, a)
				continue
			}
		}
		cur = ""
		out = append(out, a)
	}
	return out
}

func poolRotate(c *call) error {
	name := c.args[0]
	switch {
	case c.o.resume && c.o.abort:
		return usagef("pool rotate %s: --resume and --abort exclude each other", name)
	case (c.o.resume || c.o.abort) && (len(c.o.out) > 0 || len(c.o.in) > 0):
		return usagef("pool rotate %s: --resume and --abort take the addresses recorded in the pool, not --out/--in", name)
	case c.o.abort:
		return rotateAbort(c, name)
	case !c.o.resume && len(c.o.out) == 0:
		return usagef("pool rotate %s: give --out ADDR... (and --in ADDR...), or --resume", name)
	}
	if c.o.dryRun && c.o.resume {
		return usagef("pool rotate %s: --dry-run shows the first step of a new rotation; --resume has nothing to preview", name)
	}
	if c.o.resume {
		d, err := c.load()
		if err != nil {
			return err
		}
		if _, err := rotating(d, name); err != nil {
			return fmt.Errorf("%w; nothing to resume", err)
		}
	} else {
		out, err := parseAddrs("pool "+name+": --out", c.o.out)
		if err != nil {
			return err
		}
		in, err := parseAddrs("pool "+name+": --in", c.o.in)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(out, func(a netip.Addr) bool { return slices.Contains(in, a) }); i >= 0 {
			return usagef("pool rotate %s: %s is both in --out and --in", name, out[i])
		}
		if err := rotateStart(c, name, out, in); err != nil || c.o.dryRun {
			return err
		}
	}
	for _, step := range []struct {
		n  int
		fn func(*call, string) error
	}{{stepStart, nil}, {stepDrain, rotateDrain}, {stepWait, rotateWait}, {stepFinish, rotateFinish}} {
		hint := "the store is consistent; finish with: ops pool rotate --resume " + name
		if step.fn != nil {
			if err := step.fn(c, name); err != nil {
				return &hintError{err, hint}
			}
		} else if c.o.resume {
			continue
		}
		if c.e.afterStep != nil {
			if err := c.e.afterStep(step.n); err != nil {
				return &hintError{fmt.Errorf("pool %s: rotation stopped after step %d: %w", name, step.n, err), hint}
			}
		}
	}
	return nil
}

// rotateStart records the rotation and adds the incoming addresses, in one
// write.
func rotateStart(c *call, name string, out, in []netip.Addr) error {
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := getPool(d, name)
		if err != nil {
			return err
		}
		if p.Rotation != nil {
			return fmt.Errorf("pool %s: a rotation is already in progress (%s); finish it with ops pool rotate --resume %s, or --abort it", name, rotationSummary(d, p, c.e.now()), name)
		}
		if err := mustBeInPool(p, out); err != nil {
			return err
		}
		for _, a := range in {
			if err := checkNewAddr(d, name, a, c.o.allowReserved); err != nil {
				return err
			}
			addTo(p, a)
		}
		p.Rotation = &model.Rotation{Out: out, In: in}
		if c.o.waitSet {
			p.Rotation.Wait = c.o.wait.String()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: step 1/4: rotation recorded, %s added", name, plural(len(in), "address", "addresses"))
	return nil
}

// rotateDrain drains the outgoing addresses and records when.
func rotateDrain(c *call, name string) error {
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := rotating(d, name)
		if err != nil {
			return err
		}
		r := p.Rotation
		if r.DrainedAt != "" {
			return nil // done before an interruption
		}
		for _, a := range r.Out {
			if inPool(p, a) && !slices.Contains(p.Drain, a) {
				p.Drain = append(p.Drain, a)
				r.Drained = append(r.Drained, a)
			}
		}
		r.DrainedAt = c.e.now().UTC().Format(time.RFC3339Nano)
		r.TTL = maxTTL(d, name)
		if c.o.waitSet {
			r.Wait = c.o.wait.String()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: step 2/4: drained %s", name, addrStrings(d.Pool(name).Rotation.Out))
	return nil
}

func rotating(d *model.Document, name string) (*model.Pool, error) {
	p, err := getPool(d, name)
	if err != nil {
		return nil, err
	}
	if p.Rotation == nil {
		return nil, fmt.Errorf("pool %s: no rotation in progress", name)
	}
	return p, nil
}

// minRotationWait is the wait after draining when no route uses the pool
// (nothing says how long resolvers may cache its addresses).
const minRotationWait = 60 * time.Second

// maxTTL is the largest TTL of the routes using the pool.
func maxTTL(d *model.Document, pool string) uint32 {
	var ttl uint32
	for _, r := range routesUsing(d, pool) {
		ttl = max(ttl, r.TTL)
	}
	return ttl
}

// rotationWait is how long the rotation of p waits after draining, and
// why: the --wait recorded, or twice the largest TTL of the pool's routes
// (the larger of the one recorded at drain time and today's), or the floor
// when no route uses the pool.
func rotationWait(d *model.Document, p *model.Pool) (time.Duration, string) {
	r := p.Rotation
	if w, err := time.ParseDuration(r.Wait); r.Wait != "" && err == nil {
		return w, "--wait " + r.Wait
	}
	ttl := max(r.TTL, maxTTL(d, p.Name))
	if ttl == 0 {
		return minRotationWait, fmt.Sprintf("no route uses the pool: the minimum, %s", minRotationWait)
	}
	return 2 * time.Duration(ttl) * time.Second, fmt.Sprintf("twice the largest TTL, %ds", ttl)
}

// rotationUntil is when the rotation of p may remove the outgoing
// addresses; false before they are drained.
func rotationUntil(d *model.Document, p *model.Pool) (time.Time, bool) {
	since, err := time.Parse(time.RFC3339, p.Rotation.DrainedAt)
	if err != nil {
		return time.Time{}, false
	}
	wait, _ := rotationWait(d, p)
	return since.Add(wait), true
}

// rotateWait waits until the rotation's wait (rotationWait) has passed
// since the outgoing addresses were drained.
func rotateWait(c *call, name string) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	p, err := rotating(d, name)
	if err != nil {
		return err
	}
	since, err := time.Parse(time.RFC3339, p.Rotation.DrainedAt)
	if err != nil {
		return fmt.Errorf("pool %s: rotation: drained_at %q: %v", name, p.Rotation.DrainedAt, err)
	}
	wait, why := rotationWait(d, p)
	if c.o.waitSet {
		wait, why = c.o.wait, "--wait"
	}
	until := since.Add(wait)
	left := until.Sub(c.e.now())
	if left <= 0 {
		fmt.Fprintf(c.e.stdout, "pool %s: step 3/4: waited %s (%s)\n", name, wait, why)
		return nil
	}
	fmt.Fprintf(c.e.stdout, "pool %s: step 3/4: waiting %s until %s (%s); an interruption is safe: ops pool rotate --resume %s\n",
		name, left.Round(time.Second), until.UTC().Format(time.RFC3339), why, name)
	if isTerminal(c.e.stderr) {
		return progress(c.ctx, c.e, c.e.stderr, since, until)
	}
	return c.e.sleep(c.ctx, left)
}

// progress draws a bar on a terminal until the deadline.
func progress(ctx context.Context, e *env, w io.Writer, from, until time.Time) error {
	total := until.Sub(from)
	for {
		now := e.now()
		left := until.Sub(now)
		frac := 1.0
		if total > 0 {
			frac = min(1, max(0, 1-float64(left)/float64(total)))
		}
		const width = 40
		n := int(frac * width)
		fmt.Fprintf(w, "\r[%s%s] %3d%% %8s left ", strings.Repeat("#", n), strings.Repeat(".", width-n), int(frac*100), max(0, left).Round(time.Second))
		if left <= 0 {
			fmt.Fprintln(w)
			return nil
		}
		if err := e.sleep(ctx, min(left, time.Second)); err != nil {
			fmt.Fprintln(w)
			return err
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// rotateFinish removes the outgoing addresses and the record, in one write.
func rotateFinish(c *call, name string) error {
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := rotating(d, name)
		if err != nil {
			return err
		}
		if p.Rotation.DrainedAt == "" {
			return fmt.Errorf("pool %s: rotation: the outgoing addresses were never drained", name)
		}
		for _, a := range p.Rotation.Out {
			removeFrom(p, a)
		}
		p.Rotation = nil
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: step 4/4: removed the outgoing addresses; rotation done", name)
	return nil
}

// rotateAbort undrains the outgoing addresses the rotation drained (not
// those drained before it) and drops the record; the incoming addresses
// stay (they may have been handed out already).
func rotateAbort(c *call, name string) error {
	var undrained, kept []netip.Addr
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := rotating(d, name)
		if err != nil {
			return err
		}
		r := p.Rotation
		undrained, kept = nil, nil
		for _, a := range r.Out {
			switch {
			case slices.Contains(r.Drained, a):
				undrained = append(undrained, a)
			case slices.Contains(p.Drain, a):
				kept = append(kept, a)
			}
		}
		p.Drain = slices.DeleteFunc(p.Drain, func(a netip.Addr) bool { return slices.Contains(undrained, a) })
		p.Rotation = nil
		return nil
	})
	if err != nil {
		return err
	}
	msg := "rotation aborted; the incoming addresses stay"
	if len(undrained) > 0 {
		msg += "; handed out again: " + addrStrings(undrained)
	}
	if len(kept) > 0 {
		msg += "; still drained (they were before the rotation): " + addrStrings(kept)
	}
	c.done(d, changed, "pool %s: %s", name, msg)
	return nil
}
