package edge

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/v6pod/v6pod/internal/cli"
)

const usage = `usage: edge [--config FILE] [--listen ADDR]... [--tls-listen ADDR --tls-certs DIR]
            [--source file:///pods.yaml|redis://...|consul://...] [--metrics ADDR]

The edge proxy: serves HTTP/1.1 and HTTP/2 for every hosted app and forwards
each request by its Host to one of the app's upstreams. Flags override the
file. SIGTERM drains (see edge/README.md).

`

// Main is the edge command: it parses args, loads the config file, applies
// the flags over it, validates, and serves until ctx ends, then drains. It
// returns the exit code: 0 after a clean shutdown, 1 on a runtime error, 2
// on bad usage or configuration.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "strict YAML configuration `file`")
		src        = fs.String("source", "", "upstream source `URL`: file:///pods.yaml, redis://host:port/db, consul://host:port/prefix")
		metrics    = fs.String("metrics", "", "serve /metrics, /healthz and /readyz on `address`")
		certs      = fs.String("tls-certs", "", "`folder` of PEM certificates for TLS listeners")
		node       = fs.String("node", "", "node `name` (default: the host name)")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
		logFormat  = fs.String("log-format", "text", "text or json")
		accessLog  = fs.Bool("access-log", false, "write an access log (sampled above access_log.rate per second)")
		checkOnly  = fs.Bool("check", false, "validate the configuration and exit")
		listens    []Listener
	)
	addListen := func(tls bool) func(string) error {
		return func(v string) error {
			var addrs []string
			cli.List(&addrs)(v)
			for _, a := range addrs {
				listens = append(listens, Listener{Addr: a, TLS: tls})
			}
			return nil
		}
	}
	fs.Func("listen", "plain HTTP `address` to serve (repeat or comma-separate)", addListen(false))
	fs.Func("tls-listen", "HTTPS `address` to serve (repeat or comma-separate)", addListen(true))
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	var cfg Config
	if *configPath != "" {
		c, err := LoadConfig(*configPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		cfg = c
	}
	if len(listens) > 0 {
		cfg.Listen = listens
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "source":
			cfg.Source = *src
		case "metrics":
			cfg.Metrics = *metrics
		case "tls-certs":
			cfg.TLS.CertDir = *certs
		case "node":
			cfg.Node = *node
		case "access-log":
			cfg.AccessLog.Enabled = *accessLog
		}
	})
	logger, err := cli.Logger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "edge: %v\n", err)
		return 2
	}
	_, run, err := NewWithBGP(cfg, cfg.BGP, logger, WithLogger(logger), WithAccessLogger(slog.New(slog.NewJSONHandler(stdout, nil))))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "edge: configuration ok")
		return 0
	}
	if err := run(ctx); err != nil {
		logger.Error("edge: stopped", "err", err)
		return 1
	}
	return 0
}
