// Command edge is the edge proxy; see package edge.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/v6pod/v6pod/edge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := edge.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
