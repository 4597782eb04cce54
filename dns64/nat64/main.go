package nat64

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/v6pod/v6pod/internal/cli"
)

const usage = `usage: nat64 --tun NAME --pool6 PREFIX --pool4 PREFIX [--metrics ADDR] [--config FILE] [--no-routes]

Stateful NAT64 (RFC 6146, RFC 7915) on a TUN device: IPv6 clients reach
IPv4 servers at pool6::IPv4, translated from the pool4 addresses.
Flags override the file.

`

// Main is the nat64 command: flags, config file, validation, then the
// translator until ctx ends. Exit codes: 0 clean shutdown, 1 runtime
// error, 2 bad usage or configuration.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nat64", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "strict YAML configuration `file`")
		tun        = fs.String("tun", "", "TUN device `name` (default nat64)")
		pool6      = fs.String("pool6", "", "RFC 6052 `prefix` (e.g. 64:ff9b::/96)")
		metrics    = fs.String("metrics", "", "serve Prometheus metrics on `address`")
		noRoutes   = fs.Bool("no-routes", false, "do not add routes for pool6 and pool4 into the device")
		noOffload  = fs.Bool("no-offload", false, "open the TUN device without GSO/checksum offloads")
		queues     = fs.Int("queues", 0, "TUN queues and workers (default: CPUs)")
		binlog     = fs.String("binding-log", "", "binding log `destination`: stdout, stderr or a file")
		logLevel   = fs.String("log-level", "", "debug, info, warn or error")
		checkOnly  = fs.Bool("check", false, "validate the configuration and exit")
		pool4      []string
	)
	fs.Func("pool4", "IPv4 `prefix` [ports LO-HI] (repeat or comma-separate)", cli.List(&pool4))
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
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "tun":
			cfg.TUN = *tun
		case "pool6":
			cfg.Pool6 = *pool6
		case "pool4":
			cfg.Pool4 = pool4
		case "metrics":
			cfg.Metrics = *metrics
		case "no-routes":
			cfg.NoRoutes = *noRoutes
		case "no-offload":
			cfg.NoOffload = *noOffload
		case "queues":
			cfg.Queues = *queues
		case "binding-log":
			cfg.BindingLog = *binlog
		}
	})
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cfg.BGP != nil {
		if err := ValidateBGP(cfg.BGP); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "nat64: configuration is valid")
		return 0
	}
	log, err := cli.Logger(stderr, *logLevel, "")
	if err != nil {
		fmt.Fprintf(stderr, "nat64: --log-level: %v\n", err)
		return 2
	}
	n, err := New(cfg, WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer n.Close()
	run := n.Run
	if cfg.BGP != nil {
		a, err := NewAnnouncer(*cfg.BGP, n, log)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		run = a.Run
	}
	if err := run(ctx); err != nil {
		log.Error("nat64 failed", "err", err)
		return 1
	}
	return 0
}
