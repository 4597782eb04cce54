package nat64

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The root tests build three network namespaces:
//
//	client (IPv6 only) 2001:db8:1::2 --veth-- 2001:db8:1::1 translator
//	translator: TUN "nat64t" with routes for 64:ff9b::/96 and 198.51.100.0/28
//	translator 192.0.2.1 --veth (MTU 1400)-- 192.0.2.2 server (IPv4 only)
//
// and run the translator in-process inside the translator namespace.

type topo struct {
	client, trans, server string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newTopo(t *testing.T) topo {
	requireRoot(t)
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, time.Now().UnixNano()%1000)
	tp := topo{client: "n64c" + id, trans: "n64t" + id, server: "n64s" + id}
	for _, ns := range []string{tp.client, tp.trans, tp.server} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	c, tr, s := tp.client, tp.trans, tp.server
	for _, cmd := range [][]string{
		{"ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "t0", "netns", tr},
		{"ip", "link", "add", "t1", "netns", tr, "type", "veth", "peer", "name", "s0", "netns", s},
		{"ip", "-n", c, "link", "set", "lo", "up"},
		{"ip", "-n", tr, "link", "set", "lo", "up"},
		{"ip", "-n", s, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", c, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
		{"ip", "netns", "exec", tr, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		{"ip", "-n", c, "addr", "add", "2001:db8:1::2/64", "dev", "c0", "nodad"},
		{"ip", "-n", tr, "addr", "add", "2001:db8:1::1/64", "dev", "t0", "nodad"},
		{"ip", "-n", tr, "addr", "add", "192.0.2.1/24", "dev", "t1"},
		{"ip", "-n", s, "addr", "add", "192.0.2.2/24", "dev", "s0"},
		{"ip", "-n", tr, "link", "set", "t1", "mtu", "1400"},
		{"ip", "-n", s, "link", "set", "s0", "mtu", "1400"},
		{"ip", "-n", c, "link", "set", "c0", "up"},
		{"ip", "-n", tr, "link", "set", "t0", "up"},
		{"ip", "-n", tr, "link", "set", "t1", "up"},
		{"ip", "-n", s, "link", "set", "s0", "up"},
		{"ip", "-n", c, "-6", "route", "add", "default", "via", "2001:db8:1::1"},
		{"ip", "-n", s, "route", "add", "default", "via", "192.0.2.1"},
	} {
		run(t, cmd...)
	}
	return tp
}

// inNS runs f on a thread switched into the named namespace.
func inNS(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan struct{})
	var ferr error
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ferr = err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ferr = err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ferr = err
			return
		}
		f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then retires it.
			ferr = err
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if ferr != nil {
		t.Fatal(ferr)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startNAT(t *testing.T, tp topo, cfg Config, opts ...Option) *NAT {
	t.Helper()
	var n *NAT
	var err error
	inNS(t, tp.trans, func() { n, err = New(cfg, opts...) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		n.Close()
	})
	return n
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestNetnsNoRoutes: the device is created and up, and no route is added.
func TestNetnsNoRoutes(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	startNAT(t, tp, Config{TUN: "nat64n", Pool6: "64:ff9b::/96", Pool4: []string{"198.51.100.0/28"}, NoRoutes: true, Queues: 1})
	link := run(t, "ip", "-n", tp.trans, "link", "show", "nat64n")
	if !strings.Contains(link, "UP") || !strings.Contains(link, "mtu 1500") {
		t.Fatalf("link: %s", link)
	}
	if r := run(t, "ip", "-n", tp.trans, "-6", "route", "show", "dev", "nat64n") + run(t, "ip", "-n", tp.trans, "-4", "route", "show", "dev", "nat64n"); strings.Contains(r, "64:ff9b") || strings.Contains(r, "198.51.100") {
		t.Fatalf("routes added despite no_routes:\n%s", r)
	}
}

func drops(tr *Translator) (d [numDrops]uint64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range tr.paths {
		for i := range d {
			d[i] += p.stats.drops[i].Load()
		}
	}
	return d
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNetnsTraffic(t *testing.T) {
	requireRoot(t)
	t.Run("offload", func(t *testing.T) { t.Parallel(); testTraffic(t, false) })
	t.Run("no-offload", func(t *testing.T) { t.Parallel(); testTraffic(t, true) })
}

func testTraffic(t *testing.T, noOffload bool) {
	tp := newTopo(t)
	blog := &syncBuf{}
	metricsAddr := freePort(t)
	n := startNAT(t, tp, Config{
		TUN:       "nat64t",
		NoOffload: noOffload,
		Metrics:   metricsAddr,
		Pool6:     "64:ff9b::/96",
		Pool4:     []string{"198.51.100.0/28"},
		Timeouts: Timeouts{
			UDP: 1500 * time.Millisecond, ICMP: 1500 * time.Millisecond,
			TCPEstablished: 3 * time.Second, TCPTransitory: 1500 * time.Millisecond,
		},
	}, AllowShortTimeouts(), WithBindingLog(blog), WithSweepInterval(200*time.Millisecond))
	tr := n.Translator()

	// IPv4-only servers: HTTP and UDP echo on 192.0.2.2.
	var hl, bl net.Listener
	var uc net.PacketConn
	inNS(t, tp.server, func() {
		var err error
		if hl, err = net.Listen("tcp4", "192.0.2.2:8080"); err != nil {
			t.Error(err)
		}
		if bl, err = net.Listen("tcp4", "192.0.2.2:9000"); err != nil {
			t.Error(err)
		}
		if uc, err = net.ListenPacket("udp4", "192.0.2.2:7"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	// Bulk: read until EOF, answer the SHA-256 of what arrived.
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			h := sha256.New()
			io.Copy(h, c)
			c.Write(h.Sum(nil))
			c.Close()
		}
	}()
	t.Cleanup(func() { bl.Close() })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})}
	go srv.Serve(hl)
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			m, a, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(buf[:m], a)
		}
	}()
	t.Cleanup(func() { uc.Close() })

	// The client dials the server at 64:ff9b::192.0.2.2.
	var httpConn, udpConn, bulkConn net.Conn
	inNS(t, tp.client, func() {
		var err error
		if bulkConn, err = net.DialTimeout("tcp6", "[64:ff9b::c000:202]:9000", 5*time.Second); err != nil {
			t.Error(err)
		}
		if httpConn, err = net.DialTimeout("tcp6", "[64:ff9b::c000:202]:8080", 5*time.Second); err != nil {
			t.Error(err)
		}
		if udpConn, err = net.Dial("udp6", "[64:ff9b::c000:202]:7"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("tcp http get", func(t *testing.T) {
		defer httpConn.Close()
		httpConn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(httpConn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		body, err := io.ReadAll(httpConn)
		if err != nil {
			t.Fatal(err)
		}
		// The server sees a pool4 address.
		if !strings.Contains(string(body), "200 OK") || !strings.Contains(string(body), "hello 198.51.100.") {
			t.Fatalf("response %q", body)
		}
	})

	t.Run("tcp bulk 16 MiB", func(t *testing.T) {
		// Large writes: with offloads the translator sees TCP super-packets.
		defer bulkConn.Close()
		bulkConn.SetDeadline(time.Now().Add(20 * time.Second))
		data := make([]byte, 16<<20)
		for i := range data {
			data[i] = byte(i*31 + i>>9)
		}
		want := sha256.Sum256(data)
		if _, err := bulkConn.Write(data); err != nil {
			t.Fatal(err)
		}
		bulkConn.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(bulkConn)
		if err != nil || !bytes.Equal(got, want[:]) {
			t.Fatalf("server got different bytes (%x, %v)", got, err)
		}
		if d := drops(tr); d[dropOffload] != 0 || d[dropMalformed] != 0 {
			t.Fatalf("drops: %d offload, %d malformed", d[dropOffload], d[dropMalformed])
		}
	})

	t.Run("udp echo", func(t *testing.T) {
		udpConn.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("ping over nat64")
		if _, err := udpConn.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		m, err := udpConn.Read(buf)
		if err != nil || !bytes.Equal(buf[:m], msg) {
			t.Fatalf("echo %q, %v", buf[:m], err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		var c *icmp.PacketConn
		inNS(t, tp.client, func() {
			var err error
			if c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::"); err != nil {
				t.Error(err)
			}
		})
		if c == nil {
			t.FailNow()
		}
		defer c.Close()
		dst := &net.IPAddr{IP: net.ParseIP("64:ff9b::c000:202")}
		for seq := 1; seq <= 2; seq++ {
			req := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: 0x4242, Seq: seq, Data: []byte("nat64 ping")}}
			b, _ := req.Marshal(nil)
			if _, err := c.WriteTo(b, dst); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				buf := make([]byte, 1500)
				m, from, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("no echo reply %d: %v", seq, err)
				}
				msg, err := icmp.ParseMessage(58, buf[:m])
				if err != nil || msg.Type != ipv6.ICMPTypeEchoReply {
					continue
				}
				e := msg.Body.(*icmp.Echo)
				if e.ID == 0x4242 && e.Seq == seq && string(e.Data) == "nat64 ping" && from.String() == dst.String() {
					break
				}
			}
		}
	})

	t.Run("packet too big", func(t *testing.T) {
		// 1452 bytes of UDP make a 1500-byte IPv6 packet, 1480 bytes of
		// IPv4 with DF: the 1400-byte server link refuses it, the
		// translator turns Fragmentation Needed into Packet Too Big (MTU
		// 1420) and the client's kernel records that path MTU.
		if _, err := udpConn.Write(make([]byte, 1452)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "path MTU 1420 at the client", 5*time.Second, func() bool {
			out, _ := exec.Command("ip", "-n", tp.client, "-6", "route", "get", "64:ff9b::c000:202").CombinedOutput()
			return strings.Contains(string(out), "mtu 1420")
		})
	})
	udpConn.Close()

	t.Run("metrics", func(t *testing.T) {
		var body string
		waitFor(t, "/metrics", 5*time.Second, func() bool {
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return true
		})
		for _, want := range []string{`nat64_sessions{proto="udp"} 1`, `nat64_translations_total{direction="4to6"}`, `nat64_pool4_ports{address="198.51.100.15"} 64512`, `nat64_drops_total{reason="syn_rate"} 0`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if strings.Contains(body, "go_goroutines") {
			t.Error("process-global metrics leaked into the registry")
		}
	})

	t.Run("session expiry", func(t *testing.T) {
		tcp, udp, icmp := tr.Sessions()
		if udp == 0 || icmp == 0 {
			t.Fatalf("sessions before expiry: tcp %d udp %d icmp %d", tcp, udp, icmp)
		}
		waitFor(t, "all sessions to expire", 15*time.Second, func() bool {
			tcp, udp, icmp := tr.Sessions()
			return tcp+udp+icmp == 0
		})
		var adds, dels int
		for _, l := range strings.Split(strings.TrimSpace(blog.String()), "\n") {
			e, err := ParseBindingLine(l)
			if err != nil {
				t.Fatal(err)
			}
			if e.V6.Addr().String() != "2001:db8:1::2" || !strings.HasPrefix(e.V4.Addr().String(), "198.51.100.") {
				t.Errorf("binding %+v", e)
			}
			if e.Add {
				adds++
			} else {
				dels++
			}
		}
		if adds < 3 || adds != dels {
			t.Fatalf("binding log: %d add, %d del lines:\n%s", adds, dels, blog.String())
		}
	})
}
