// Command appserver is the lab's "container": an HTTP server that answers
// every request with the address it was reached on, so tests can tell which
// container (and, through headers, which edge) served them.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	listen := flag.String("listen", "[::1]:8080", "comma-separated addresses to listen on")
	flag.Parse()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		w.Header().Set("X-Container", local.String())
		fmt.Fprintf(w, "container %s host %s via %s xff %q\n", local, r.Host, r.RemoteAddr, r.Header.Get("X-Forwarded-For"))
	})
	errc := make(chan error)
	for _, addr := range strings.Split(*listen, ",") {
		go func() { errc <- http.ListenAndServe(addr, handler) }()
	}
	log.Print(<-errc)
	os.Exit(1)
}
