package dns64

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/v6pod/v6pod/internal/cli"
)

const usage = `usage: dns64 [--config FILE] [--listen ADDR] [--upstream ADDR]... [--prefix PREFIX] [--metrics ADDR]

DNS64 server (RFC 6147): forwards to the upstreams and synthesizes AAAA
records from A records inside the NAT64 prefix. Flags override the file.

`

// Main is the dns64 command: it parses args, loads the config file, applies
// the flags over it, validates, and serves until ctx ends. It returns the
// process exit code: 0 after a clean shutdown, 1 on a runtime error, 2 on
// bad usage or configuration.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns64", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "strict YAML configuration `file`")
		listen     = fs.String("listen", "", "UDP and TCP `address` to serve (default [::1]:5364)")
		prefix     = fs.String("prefix", "", "NAT64 `prefix` (default 64:ff9b::/96)")
		metrics    = fs.String("metrics", "", "serve Prometheus metrics on `address`")
		logLevel   = fs.String("log-level", "", "debug, info, warn or error")
		logFormat  = fs.String("log-format", "", "text or json")
		checkOnly  = fs.Bool("check", false, "validate the configuration and exit")
		upstreams  []string
	)
	fs.Func("upstream", "upstream resolver `address` (repeat or comma-separate for several)", cli.List(&upstreams))
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}

	var cfg Config
	if *configPath != "" {
		c, err := LoadConfigFile(*configPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		cfg = c
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "prefix":
			cfg.Prefix = *prefix
		case "metrics":
			cfg.Metrics = *metrics
		case "log-level":
			cfg.LogLevel = *logLevel
		case "log-format":
			cfg.LogFormat = *logFormat
		case "upstream":
			cfg.Upstreams = upstreams
		}
	})
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "dns64: configuration is valid")
		return 0
	}

	log, err := cli.Logger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "dns64: %v\n", err)
		return 2
	}
	srv, err := New(cfg, WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("dns64 failed", "err", err)
		return 1
	}
	return 0
}
