// Package nat64 is a stateful NAT64 (RFC 6146) translating IPv6 packets
// to IPv4 and back (RFC 7915) over a multi-queue TUN device, with a
// sharded session table, RFC 6056 port allocation, RFC 6888 binding logs
// and Prometheus metrics.
package nat64

import (
	"encoding/binary"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/v6pod/v6pod/internal/addr"
)

// Option changes New and NewTranslator.
type Option func(*options)

type options struct {
	log        *slog.Logger
	now        func() time.Time
	allowShort bool
	binlog     io.Writer
	sweep      time.Duration
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// AllowShortTimeouts lets timeouts go below the RFC 6146 minima (tests of
// session expiry). Never use it in production.
func AllowShortTimeouts() Option { return func(o *options) { o.allowShort = true } }

// WithBindingLog sends binding log lines to w instead of the
// configuration's binding_log.
func WithBindingLog(w io.Writer) Option { return func(o *options) { o.binlog = w } }

// WithSweepInterval sets how often expired sessions are removed (default
// one second).
func WithSweepInterval(d time.Duration) Option { return func(o *options) { o.sweep = d } }

// Translator is the translation core: configuration, state and the
// per-worker Paths. It does no I/O except the binding log.
type Translator struct {
	cfg      Config
	prefix   addr.NAT64Prefix
	pool     [][2]uint32 // pool4 as merged intervals, for inPool4
	tab      *table
	syn      *synLimiter
	frags    fragCache
	icmpSrc6 [16]byte
	now      func() time.Time
	log      *slog.Logger
	blog     *bindingLog
	sweep    time.Duration

	mu    sync.Mutex
	paths []*Path
}

// Path is one worker's translation context (not safe for concurrent use;
// make one per goroutine with NewPath).
type Path struct {
	t     *Translator
	ipID  uint16
	stats *pathStats

	hpBuf []byte // the IPv4 half of a hairpinned packet (allocated on first use)

	icmpTokens float64 // ICMP error token bucket (RFC 4443 2.4 (f))
	icmpLast   int64
}

// allowICMPError takes a token of the worker's ICMP error budget.
func (p *Path) allowICMPError() bool {
	rate := float64(p.t.cfg.ICMPErrorRate)
	if rate <= 0 {
		return true
	}
	now := p.t.now().UnixNano()
	p.icmpTokens += float64(now-p.icmpLast) / 1e9 * rate
	p.icmpLast = now
	if burst := rate / 10; p.icmpTokens > max(burst, 1) {
		p.icmpTokens = max(burst, 1)
	}
	if p.icmpTokens < 1 {
		return false
	}
	p.icmpTokens--
	return true
}

// NewTranslator checks cfg (defaults filled) and builds the state.
func NewTranslator(cfg Config, opts ...Option) (*Translator, error) {
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now, sweep: time.Second}
	for _, f := range opts {
		f(&o)
	}
	cfg.SetDefaults()
	cfg.allowShort = o.allowShort
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Translator{cfg: cfg, prefix: cfg.prefix, now: o.now, log: o.log, sweep: o.sweep}
	var err error
	if t.blog, err = openBindingLog(cfg.BindingLog, o.binlog); err != nil {
		return nil, err
	}
	var as []uint32
	for _, r := range cfg.pool4 {
		as = append(as, binary.BigEndian.Uint32(r.addr[:]))
	}
	slices.Sort(as)
	for _, a := range as {
		if n := len(t.pool); n > 0 && t.pool[n-1][1]+1 == a {
			t.pool[n-1][1] = a
		} else {
			t.pool = append(t.pool, [2]uint32{a, a})
		}
	}
	t.icmpSrc6 = t.prefix.Embed(cfg.pool4[0].addr)
	t.tab = newTable(&t.cfg, o.now, t.blog, o.sweep)
	if cfg.SYNRate > 0 {
		t.syn = newSynLimiter(cfg.SYNRate)
	}
	return t, nil
}

// NewPath returns a new worker context.
func (t *Translator) NewPath() *Path {
	p := &Path{t: t, stats: new(pathStats)}
	t.tab.mu.Lock()
	p.ipID = uint16(t.tab.rng.Uint32()) // RFC 7915 5.1: an unpredictable start
	t.tab.mu.Unlock()
	t.mu.Lock()
	t.paths = append(t.paths, p)
	t.mu.Unlock()
	return p
}

// Expire removes expired sessions now and returns how many went.
func (t *Translator) Expire() int {
	n := t.tab.expire(t.now().UnixNano())
	t.blog.flush()
	return n
}

// Sessions returns the number of sessions by protocol.
func (t *Translator) Sessions() (tcp, udp, icmp int64) {
	return t.tab.count[0].Load(), t.tab.count[1].Load(), t.tab.count[2].Load()
}

// Close flushes the binding log.
func (t *Translator) Close() error { return t.blog.close() }

func (t *Translator) inPool4(a [4]byte) bool {
	v := binary.BigEndian.Uint32(a[:])
	for _, r := range t.pool {
		if v >= r[0] && v <= r[1] {
			return true
		}
	}
	return false
}

// validRemote4 refuses IPv4 addresses a NAT64 must not translate to or
// from: this network (0/8), loopback, multicast and reserved (224/3),
// and the pool itself (pool4 destinations are hairpinned instead; a
// pool4 source from outside is spoofed).
func (t *Translator) validRemote4(a [4]byte) bool {
	switch {
	case a[0] == 0, a[0] == 127, a[0] >= 224:
		return false
	}
	return !t.inPool4(a)
}
