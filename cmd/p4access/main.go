// Command p4access programs the NAT64 access tier's P4 switch; `p4access
// sim` runs the access.p4 simulator instead. See p4/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/v6pod/v6pod/p4/controller"
	"github.com/v6pod/v6pod/p4/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if len(os.Args) > 1 && os.Args[1] == "sim" {
		code = sim.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		code = controller.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}
