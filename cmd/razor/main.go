// Command razor is the authoritative DNS server that steers clients to
// edge addresses; see razor/README.md.
package main

import (
	"context"
	"os"

	"github.com/v6pod/v6pod/razor"
)

func main() {
	os.Exit(razor.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
