package razor

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/v6pod/v6pod/internal/cli"
)

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Main is the razor command: flags, config file, signals (SIGHUP reloads
// the zones, SIGINT/SIGTERM or the end of ctx shut down gracefully). It
// returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("razor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen, zones listFlag
		configPath    = fs.String("config", "", "YAML configuration `file` (flags override it)")
		storeURL      = fs.String("store", "", "pools and routes: file:///pods.yaml or consul://127.0.0.1:8500/v6pod")
		metricsAddr   = fs.String("metrics", "", "serve Prometheus /metrics on `host:port` (none by default)")
		consulAddr    = fs.String("consul", "", "Consul agent `host:port` for edge health and registration")
		logLevel      = fs.String("log-level", "info", "debug, info, warn or error")
		logJSON       = fs.Bool("log-json", false, "log JSON instead of text")
		check         = fs.Bool("check", false, "check the configuration, zones and store data, then exit")
		cpuProfile    = fs.String("cpuprofile", "", "write a CPU profile to `file` until exit (benchmarks)")
	)
	fs.Var(&listen, "listen", "serve UDP and TCP on `host:port` (repeatable)")
	fs.Var(&zones, "zone", "serve `origin=file` (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: razor --listen 127.0.0.1:5353 --zone v6pod.test=v6pod.test.zone --store file:///pods.yaml [--metrics ADDR] [--config FILE]")
		fs.PrintDefaults()
	}
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	logFormat := "text"
	if *logJSON {
		logFormat = "json"
	}
	log, err := cli.Logger(stderr, *logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "razor: --log-level: %v\n", err)
		return 2
	}

	var cfg Config
	if *configPath != "" {
		c, err := LoadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "razor: %v\n", err)
			return 2
		}
		cfg = c
	}
	if len(listen) > 0 {
		cfg.Listen = listen
	}
	if len(zones) > 0 {
		cfg.Zones = nil
		for _, z := range zones {
			origin, file, ok := strings.Cut(z, "=")
			if !ok {
				fmt.Fprintf(stderr, "razor: --zone %q: want origin=file\n", z)
				return 2
			}
			cfg.Zones = append(cfg.Zones, ZoneConfig{Origin: origin, File: file})
		}
	}
	if *storeURL != "" {
		cfg.Store = *storeURL
		// file://relative/pods.yaml means a path relative to the working
		// folder (a file URL proper has three slashes).
		if rest, ok := strings.CutPrefix(cfg.Store, "file://"); ok && !strings.HasPrefix(rest, "/") {
			if abs, err := filepath.Abs(rest); err == nil {
				cfg.Store = "file://" + abs
			}
		}
	}
	if *metricsAddr != "" {
		cfg.Metrics = *metricsAddr
	}
	if *consulAddr != "" {
		cfg.Consul.Address = *consulAddr
	}
	opts := []Option{WithLogger(log)}
	if *check {
		// Check the listen addresses but open no socket.
		if len(cfg.Listen) == 0 {
			cfg.Listen = []string{"127.0.0.1:0"}
		}
		opts = append(opts, withoutListeners())
	}
	s, err := New(cfg, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	if *check {
		s.Close()
		fmt.Fprintln(stdout, "razor: configuration OK")
		return 0
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := s.Reload(ctx); err != nil {
					log.Error("reload failed; keeping the running zones", "err", err)
				}
			}
		}
	}()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "razor: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "razor: %v\n", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	for _, a := range s.UDPAddrs() {
		fmt.Fprintf(stdout, "razor: serving on %s (udp, tcp)\n", a)
	}
	if m := s.MetricsAddr(); m != "" {
		fmt.Fprintf(stdout, "razor: metrics on http://%s/metrics\n", m)
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "razor: %v\n", err)
		return 1
	}
	return 0
}
