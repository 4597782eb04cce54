package sim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/v6pod/v6pod/internal/cli"
)

// portFlags collects --port N=IFACE.
type portFlags map[uint32]string

func (p portFlags) String() string { return fmt.Sprint(map[uint32]string(p)) }

func (p portFlags) Set(v string) error {
	n, name, ok := strings.Cut(v, "=")
	num, err := strconv.ParseUint(n, 10, 9)
	if !ok || err != nil || name == "" {
		return fmt.Errorf("want PORT=INTERFACE with PORT below 512, got %q", v)
	}
	if _, dup := p[uint32(num)]; dup {
		return fmt.Errorf("port %d given twice", num)
	}
	p[uint32(num)] = name
	return nil
}

// Main runs the simulator as a process (`p4access sim`): a P4Runtime
// server on --listen and, with --port, the packet path over network
// interfaces. It returns the exit code when ctx ends.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("p4access sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9559", "P4Runtime gRPC address")
	deviceID := fs.Uint64("device-id", 1, "P4Runtime device id")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	ports := portFlags{}
	fs.Var(ports, "port", "switch port PORT=INTERFACE (repeatable); frames received there are forwarded by access.p4")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: p4access sim [flags]\n\nA simulator of access.p4 serving P4Runtime (not a general P4 target).")
		fs.PrintDefaults()
	}
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	log, err := cli.Logger(stderr, *logLevel, "")
	if err != nil {
		fmt.Fprintf(stderr, "p4access sim: --log-level: %v\n", err)
		return 2
	}
	s := New(WithDeviceID(*deviceID), WithLogger(log))
	var pp *Ports
	if len(ports) > 0 {
		var err error
		if pp, err = OpenPorts(ports); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		if pp != nil {
			pp.Close()
		}
		fmt.Fprintf(stderr, "p4access sim: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(lis) }()
	if pp != nil {
		go func() { errc <- pp.Run(ctx, s) }()
	}
	log.Info("access.p4 simulator", "p4runtime", lis.Addr().String(), "device_id", *deviceID, "ports", strings.Join(portNames(pp), " "))
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			if err != nil {
				fmt.Fprintf(stderr, "p4access sim: %v\n", err)
				code = 1
			}
			break loop
		case <-tick.C:
			if pp != nil {
				log.Info("frames", "stats", pp.Stats())
			}
		}
	}
	s.Stop()
	if pp != nil {
		pp.Close()
		fmt.Fprintf(stdout, "frames: %+v\n", pp.Stats())
	}
	return code
}

func portNames(p *Ports) []string {
	if p == nil {
		return nil
	}
	return p.Names()
}
