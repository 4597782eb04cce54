package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/v6pod/v6pod/internal/cli"
)

// Main is the p4access command: it parses args, loads and checks the
// configuration (flags override the file), serves metrics when asked, and
// runs until ctx ends. It returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("p4access", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "configuration file (strict YAML)")
	device := fs.String("device", "", "P4Runtime device address (default "+DefaultDeviceAddress+")")
	deviceID := fs.Uint64("device-id", 0, "P4Runtime device id (default 1)")
	bgpListen := fs.String("bgp-listen", "", "BGP listen address for the NAT64 servers (default "+DefaultBGPListen+")")
	electionFile := fs.String("election-file", "", "file keeping the election id across restarts")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this address")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	check := fs.Bool("check", false, "check the configuration and exit")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	log, err := cli.Logger(stderr, *logLevel, "")
	if err != nil {
		fmt.Fprintf(stderr, "p4access: --log-level: %v\n", err)
		return 2
	}

	var cfg Config
	if *config != "" {
		if cfg, err = LoadConfig(*config); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	if *device != "" {
		cfg.Device.Address = *device
	}
	if *deviceID != 0 {
		cfg.Device.DeviceID = *deviceID
	}
	if *bgpListen != "" {
		cfg.BGP.Listen = *bgpListen
	}
	if *electionFile != "" {
		cfg.Device.ElectionIDFile = *electionFile
	}
	if *metricsAddr != "" {
		cfg.Metrics = *metricsAddr
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "p4access: config: %v\n", err)
		return 2
	}
	if *check {
		fmt.Fprintln(stdout, "p4access: configuration ok")
		return 0
	}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, WithLogger(log), WithRegistry(reg))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Metrics != "" {
		lis, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			fmt.Fprintf(stderr, "p4access: metrics: %v\n", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(lis)
		defer srv.Close()
		log.Info("metrics", "addr", lis.Addr().String())
	}
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, strings.TrimSpace(err.Error()))
		return 1
	}
	return 0
}
