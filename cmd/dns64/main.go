// Command dns64 is the DNS64 server; see package dns64.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/v6pod/v6pod/dns64"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dns64.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
