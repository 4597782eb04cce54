// Package lab builds a whole pod in network namespaces on one machine: a
// ToR router running BIRD with ECMP, three edges announcing the same VIPs,
// IPv6-only containers, razor with Consul and Redis in an ops namespace, a
// client whose resolver is razor, and the NAT64 path. It needs root.
package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Namespaces of the lab.
const (
	nsTOR    = nsPrefix + "tor"
	nsOps    = nsPrefix + "ops"
	nsApp    = nsPrefix + "app"
	nsClient = nsPrefix + "client"
)

func nsEdge(i int) string { return fmt.Sprintf("%se%d", nsPrefix, i) }

// Addressing plan. Link n between the ToR and a namespace uses
// fd00:0:n::1/64 and 10.0.n.1/24 on the ToR side, ::2 and .2 on the other.
const (
	Edges   = 3
	TORASN  = 65000
	EdgeASN = 65001
)

// The pod's anycast VIPs: every edge serves and announces all of them; for
// razor, edge i's pool owns VIP4s[i-1] and VIP6s[i-1].
var (
	VIP4s = []string{"203.0.113.11", "203.0.113.12", "203.0.113.13"}
	VIP6s = []string{"2001:db8:f00::11", "2001:db8:f00::12", "2001:db8:f00::13"}
)

// Containers are the app namespace's IPv6-only HTTP servers.
var Containers = []string{"2001:db8:c0::1", "2001:db8:c0::2", "2001:db8:c0::3"}

const containerPort = 8080

func linkAddrs(n int) (tor, other []string) {
	return []string{fmt.Sprintf("fd00:0:%d::1/64", n), fmt.Sprintf("10.0.%d.1/24", n)},
		[]string{fmt.Sprintf("fd00:0:%d::2/64", n), fmt.Sprintf("10.0.%d.2/24", n)}
}

func linkPeer6(n int) string { return fmt.Sprintf("fd00:0:%d::2", n) }
func linkPeer4(n int) string { return fmt.Sprintf("10.0.%d.2", n) }

// Link numbers.
const (
	linkOps    = 10
	linkApp    = 11
	linkClient = 12
)

// Lab is one running pod.
type Lab struct {
	Dir   string    // configs, logs and PID files
	Bin   string    // the project's binaries
	Log   io.Writer // progress
	procs []*proc
	tor   *proc
	edges map[int]*proc
	nat64 map[int]*proc // the NAT64 servers (nat64.go)
}

// New returns a lab that keeps its files in dir and runs binaries from bin.
func New(dir, bin string, log io.Writer) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	return &Lab{Dir: abs, Bin: absBin, Log: log}, nil
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.Log, "lab: "+format+"\n", args...)
}

// Down stops every process and deletes every namespace the lab (this run
// or an earlier one) made. It is safe to call any number of times.
func (l *Lab) Down() error {
	for i := len(l.procs) - 1; i >= 0; i-- {
		l.procs[i].stop(15, 2*time.Second)
	}
	l.procs = nil
	killRecorded(l.Dir)
	var errs []error
	for _, ns := range listNS() {
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Network builds the namespaces, links, addresses and static routes.
func (l *Lab) Network() error {
	l.Down() // leftovers of a crashed run
	all := []string{nsTOR, nsOps, nsApp, nsClient}
	for i := 1; i <= Edges; i++ {
		all = append(all, nsEdge(i))
	}
	for _, ns := range all {
		if err := addNS(ns); err != nil {
			return err
		}
	}
	// Edges: a link each to the ToR; the VIPs on lo (every edge has them).
	for i := 1; i <= Edges; i++ {
		t, o := linkAddrs(i)
		if err := link(nsTOR, fmt.Sprintf("e%d", i), t, nsEdge(i), "eth0", o); err != nil {
			return err
		}
		for _, v := range VIP4s {
			if err := ip(nsEdge(i), "addr", "add", v+"/32", "dev", "lo"); err != nil {
				return err
			}
		}
		for _, v := range VIP6s {
			if err := ip(nsEdge(i), "addr", "add", v+"/128", "dev", "lo"); err != nil {
				return err
			}
		}
		if err := defaultVia(nsEdge(i), i); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		ns string
		n  int
	}{{nsOps, linkOps}, {nsApp, linkApp}, {nsClient, linkClient}} {
		t, o := linkAddrs(s.n)
		if err := link(nsTOR, strings.TrimPrefix(s.ns, nsPrefix), t, s.ns, "eth0", o); err != nil {
			return err
		}
		if err := defaultVia(s.ns, s.n); err != nil {
			return err
		}
	}
	// Containers live on the app namespace's lo; the ToR routes to them.
	for _, c := range Containers {
		if err := ip(nsApp, "addr", "add", c+"/128", "dev", "lo"); err != nil {
			return err
		}
	}
	if err := ip(nsTOR, "-6", "route", "add", "2001:db8:c0::/64", "via", linkPeer6(linkApp)); err != nil {
		return err
	}
	return nil
}

func defaultVia(ns string, n int) error {
	if err := ip(ns, "route", "add", "default", "via", fmt.Sprintf("10.0.%d.1", n)); err != nil {
		return err
	}
	return ip(ns, "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:0:%d::1", n))
}

// Up builds the whole pod: the network, the ToR, containers, Redis, Consul,
// razor and the edges. On error the caller should still call Down.
func (l *Lab) Up() error {
	steps := []struct {
		name string
		fn   func() error
	}{
		{"network", l.Network},
		{"ToR (BIRD)", l.startTOR},
		{"containers", l.startApps},
		{"Redis master and replicas", l.startRedis},
		{"Consul", l.startConsul},
		{"razor", l.startRazor},
		{"upstreams in Redis", l.seedUpstreams},
		{"edges", l.startEdges},
		{"NAT64 path (dns64, p4access, nat64 servers, origin)", l.startNAT64},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("lab: %s: %w", s.name, err)
		}
		l.logf("%s up (%s)", s.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
