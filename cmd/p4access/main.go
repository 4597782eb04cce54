// Command p4access programs the NAT64 access tier's P4 switch: see p4/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/v6pod/v6pod/p4/controller"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := controller.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
