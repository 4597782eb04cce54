package nat64

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// RFC 6146 section 3.8, with real sockets: an IPv6 client reaches a
// service published by a static binding (198.51.100.1:8081 ->
// [2001:db8:1::2]:8081) at pool6 + its pool4 address, and the answer
// comes back, both hairpinned through the translator. In both modes
// (TSO super-packets and one packet per read).
func TestNetnsHairpin(t *testing.T) {
	requireRoot(t)
	for _, mode := range []struct {
		name      string
		noOffload bool
	}{{"offload", false}, {"no-offload", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			tp := newTopo(t)
			n := startNAT(t, tp, Config{
				TUN:       "nat64t",
				NoOffload: mode.noOffload,
				Pool6:     "64:ff9b::/96",
				Pool4:     []string{"198.51.100.0/28"},
				Static:    []Static{{Proto: "tcp", V6: "[2001:db8:1::2]:8081", V4: "198.51.100.1:8081"}},
			})
			var ln net.Listener
			var c net.Conn
			inNS(t, tp.client, func() {
				var err error
				if ln, err = net.Listen("tcp6", "[2001:db8:1::2]:8081"); err != nil {
					t.Error(err)
				}
			})
			if t.Failed() {
				t.FailNow()
			}
			defer ln.Close()
			go func() {
				for {
					s, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(s, s); s.Close() }()
				}
			}()
			inNS(t, tp.client, func() {
				var err error
				c, err = net.DialTimeout("tcp6", "[64:ff9b::c633:6401]:8081", 5*time.Second)
				if err != nil {
					t.Error(err)
				}
			})
			if t.Failed() {
				t.FailNow()
			}
			defer c.Close()
			msg := bytes.Repeat([]byte("hairpin "), 40000) // 320 kB: super-packets when offloading
			go c.Write(msg)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo through the hairpin: %v", err)
			}
			var hp uint64
			n.t.mu.Lock()
			for _, p := range n.t.paths {
				hp += p.stats.hairpins.Load()
			}
			n.t.mu.Unlock()
			if hp == 0 {
				t.Fatal("no packet counted as hairpinned")
			}
		})
	}
}
