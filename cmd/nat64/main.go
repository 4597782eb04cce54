// Command nat64 is the stateful NAT64 translator; see package dns64/nat64.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/v6pod/v6pod/dns64/nat64"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := nat64.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
