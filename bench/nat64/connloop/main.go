// Command connloop measures TCP connections per second: with -serve it
// accepts connections and answers one byte; with -dial it opens, reads the
// byte and resets (SO_LINGER 0, so no TIME_WAIT piles up) as fast as -c
// goroutines can for -t, and prints the rate.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.String("serve", "", "listen `address`")
	dial := flag.String("dial", "", "server `address`")
	conc := flag.Int("c", 32, "concurrent dialers")
	dur := flag.Duration("t", 5*time.Second, "duration")
	flag.Parse()
	switch {
	case *serve != "":
		ln, err := net.Listen("tcp", *serve)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			go func() { c.Write([]byte("x")); c.Close() }()
		}
	case *dial != "":
		var ok, fail atomic.Int64
		stop := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for i := 0; i < *conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := make([]byte, 1)
				for time.Now().Before(stop) {
					c, err := net.DialTimeout("tcp", *dial, 2*time.Second)
					if err != nil {
						fail.Add(1)
						continue
					}
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Read(b); err != nil {
						fail.Add(1)
					} else {
						ok.Add(1)
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			}()
		}
		start := time.Now()
		wg.Wait()
		el := time.Since(start).Seconds()
		fmt.Printf("%.0f %d %d\n", float64(ok.Load())/el, ok.Load(), fail.Load())
	default:
		flag.Usage()
		os.Exit(2)
	}
}
