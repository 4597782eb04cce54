package nat64

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// NAT is the translator on a TUN device: New creates the device, brings
// it up and adds the routes; Run serves it until the context ends.
type NAT struct {
	t      *Translator
	cfg    Config
	log    *slog.Logger
	queues []int
	stop   int // eventfd that wakes the workers
	ready  chan struct{}

	closeOnce sync.Once
}

// New validates cfg, opens the TUN device's queues and sets up the link
// and routes. It needs CAP_NET_ADMIN.
func New(cfg Config, opts ...Option) (*NAT, error) {
	t, err := NewTranslator(cfg, opts...)
	if err != nil {
		return nil, err
	}
	n := &NAT{t: t, cfg: t.cfg, log: t.log, ready: make(chan struct{})}
	if n.queues, err = openTUN(n.cfg.TUN, n.cfg.Queues, !n.cfg.NoOffload); err != nil {
		t.Close()
		return nil, err
	}
	if n.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		for _, q := range n.queues {
			unix.Close(q)
		}
		t.Close()
		return nil, fmt.Errorf("nat64: eventfd: %w", err)
	}
	if err := setupLink(n.cfg.TUN, n.cfg.MTU, n.cfg.prefix.Prefix(), t.pool, n.cfg.NoRoutes); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Translator returns the translation core (metrics, session counts).
func (n *NAT) Translator() *Translator { return n.t }

// Run reads and translates packets with one worker per queue, expires
// sessions, and serves /metrics when configured, until ctx ends.
func (n *NAT) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(n.queues)+1)
	if n.cfg.Metrics != "" {
		ln, err := net.Listen("tcp", n.cfg.Metrics)
		if err != nil {
			return fmt.Errorf("nat64: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.t.Registry(), promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("nat64: metrics: %w", err)
			}
		}()
		go func() { <-ctx.Done(); srv.Close() }()
		n.log.Info("metrics", "addr", ln.Addr().String())
	}
	for i, q := range n.queues {
		p := n.t.NewPath()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.worker(newQueueReader(q, n.stop), p); err != nil {
				errc <- fmt.Errorf("nat64: queue %d: %w", i, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(n.t.sweep)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				n.t.Expire()
			}
		}
	}()
	close(n.ready)
	n.log.Info("nat64 running", "tun", n.cfg.TUN, "queues", len(n.queues), "pool6", n.cfg.prefix.Prefix().String(), "pool4", len(n.cfg.pool4))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	var one [8]byte
	one[7] = 1
	unix.Write(n.stop, one[:]) // wake the readers (level-triggered: all of them)
	wg.Wait()
	return err
}

func (n *NAT) worker(q *queueReader, p *Path) (err error) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("nat64 worker panic", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	in := make([]byte, vnetHdrLen+65536)
	out := make([]byte, 65536+64*(48+vnetHdrLen))
	for {
		m, err := q.read(in)
		if err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			return err
		}
		if m == 0 {
			continue
		}
		if !n.cfg.NoOffload {
			r := p.TranslateOffload(in[:m], out)
			if r.Verdict == Drop {
				continue
			}
			if r.Parts <= 1 {
				q.write(out[:r.Len])
				continue
			}
			off := 0
			for i := 0; i < r.Parts && off+vnetHdrLen+40 <= r.Len; i++ {
				l := vnetHdrLen + 40 + int(be.Uint16(out[off+vnetHdrLen+4:]))
				q.write(out[off : off+l])
				off += l
			}
			continue
		}
		var r Result
		switch in[0] >> 4 {
		case 6:
			r = p.Translate6to4(in[:m], out)
		case 4:
			r = p.Translate4to6(in[:m], out)
		default:
			p.drop(dropMalformed)
			continue
		}
		if r.Verdict == Drop {
			continue
		}
		if r.Parts <= 1 {
			q.write(out[:r.Len])
			continue
		}
		off := 0
		for i := 0; i < r.Parts && off+40 <= r.Len; i++ {
			l := 40 + int(be.Uint16(out[off+4:]))
			q.write(out[off : off+l])
			off += l
		}
	}
}

// Close closes the queues (the device goes away with the last one) and
// flushes the binding log.
func (n *NAT) Close() error {
	n.closeOnce.Do(func() {
		for _, q := range n.queues {
			unix.Close(q)
		}
		if n.stop > 0 {
			unix.Close(n.stop)
		}
		n.t.Close()
	})
	return nil
}
