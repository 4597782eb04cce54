package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNetns runs setup on a thread moved into a new network namespace; the
// namespace lives on as long as the sockets setup opened.
func inNetns(t *testing.T, setup func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- setup()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func vethPair(a, b string) error {
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		return err
	}
	for _, n := range []string{a, b} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

// TestPortsForward sends a frame into port 1 of a simulator attached to
// veth interfaces and receives it, rewritten, from port 2.
func TestPortsForward(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, AF_PACKET)")
	}
	mac := [6]byte{2, 0xaa, 0, 0, 0, 2}
	s := programmed(t, mac)
	var ports *Ports
	var h1, h2 *os.File
	inNetns(t, func() error {
		if err := vethPair("sw1", "h1"); err != nil {
			return err
		}
		if err := vethPair("sw2", "h2"); err != nil {
			return err
		}
		var err error
		if ports, err = OpenPorts(map[uint32]string{1: "sw1", 2: "sw2"}); err != nil {
			return err
		}
		if h1, err = openRaw("h1"); err != nil {
			return err
		}
		h2, err = openRaw("h2")
		return err
	})
	defer h1.Close()
	defer h2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ports.Run(ctx, s) }()

	f := frame(client6, eip, 40000, 443, 0x10)
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 2048)
	for got == nil && time.Now().Before(deadline) {
		if _, err := h1.Write(f); err != nil {
			t.Fatal(err)
		}
		h2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, err := h2.Read(buf)
			if err != nil {
				break
			}
			if n == len(f) && bytes.Equal(buf[:6], mac[:]) && bytes.Equal(buf[6:n], f[6:]) {
				got = buf[:n]
				break
			}
		}
	}
	if got == nil {
		t.Fatalf("no forwarded frame on port 2; stats %+v", ports.Stats())
	}
	// The frame can arrive before the sender counts it.
	for end := time.Now().Add(5 * time.Second); ports.Stats().Sent == 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := ports.Stats(); st.Sent == 0 || st.Verdicts["forwarded"] == 0 {
		t.Fatalf("stats %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// nsThread is a locked OS thread in a network namespace of its own: do
// runs functions on it (sockets they open belong to the namespace).
type nsThread struct {
	fd   int // the namespace, for moving links into it
	jobs chan func()
}

func newNSThread(t *testing.T) *nsThread {
	t.Helper()
	n := &nsThread{jobs: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		n.fd = fd
		errc <- err
		if err != nil {
			return
		}
		for job := range n.jobs {
			job()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(n.jobs)
		unix.Close(n.fd)
	})
	return n
}

func (n *nsThread) do(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	n.jobs <- func() { errc <- f() }
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// linkUp moves the link to the namespace (ns ≥ 0), names it, sets its
// MAC (if given) and addresses, and brings it up; it runs in the link's
// current namespace.
func moveLink(name string, ns int) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetNsFd(l, ns)
}

func setupLink(name, mac string, addrs ...string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
			return err
		}
	}
	for _, a := range addrs {
		ad, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		ad.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(l, ad); err != nil {
			return fmt.Errorf("%s %s: %w", name, a, err)
		}
	}
	return netlink.LinkSetUp(l)
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v: %s", args, err, out)
	}
	return nil
}

// TestPortsFinishChecksum runs real TCP and UDP through the simulator from
// a client whose switch-facing veth keeps transmit checksum offload on
// (the veth default): its frames reach the switch with unfinished
// checksums, which the simulator must complete or the server drops every
// SYN. Namespaces: the switch (ports sw1, sw2), the client (c0 to sw1,
// r0 the return path), the server (s0 from sw2, with the MAC the maglev
// entries name, the EIP; r1 the return path). As in the lab, only the
// client→EIP direction crosses the switch.
func TestPortsFinishChecksum(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, AF_PACKET)")
	}
	const serverMAC = "02:aa:00:00:00:02"
	hw, _ := net.ParseMAC(serverMAC)
	s := programmed(t, [6]byte(hw))
	sw, cl, sv := newNSThread(t), newNSThread(t), newNSThread(t)
	var ports *Ports
	sw.do(t, func() error {
		for _, pr := range [][2]string{{"sw1", "c0"}, {"sw2", "s0"}} {
			if err := vethPair(pr[0], pr[1]); err != nil {
				return err
			}
		}
		if err := moveLink("c0", cl.fd); err != nil {
			return err
		}
		if err := moveLink("s0", sv.fd); err != nil {
			return err
		}
		var err error
		ports, err = OpenPorts(map[uint32]string{1: "sw1", 2: "sw2"})
		return err
	})
	defer ports.Close()
	cl.do(t, func() error {
		if err := vethPair("r0", "r1"); err != nil {
			return err
		}
		if err := moveLink("r1", sv.fd); err != nil {
			return err
		}
		if err := setupLink("c0", ""); err != nil {
			return err
		}
		if err := setupLink("r0", "", client6.String()+"/128"); err != nil {
			return err
		}
		// The gateway: a static neighbour (the switch answers no ND).
		for _, args := range [][]string{
			{"ip", "-6", "neigh", "add", "fe80::1", "lladdr", "02:00:00:00:00:01", "dev", "c0", "nud", "permanent"},
			{"ip", "-6", "route", "add", eip.String() + "/128", "via", "fe80::1", "dev", "c0", "src", client6.String()},
		} {
			if err := run(args...); err != nil {
				return err
			}
		}
		return nil
	})
	sv.do(t, func() error {
		if err := setupLink("s0", serverMAC, eip.String()+"/128"); err != nil {
			return err
		}
		if err := setupLink("r1", ""); err != nil {
			return err
		}
		return run("ip", "-6", "route", "add", client6.String()+"/128", "dev", "r1")
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ports.Run(ctx, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var ln net.Listener
	var uc net.PacketConn
	sv.do(t, func() error {
		var err error
		if ln, err = net.Listen("tcp6", net.JoinHostPort(eip.String(), "0")); err != nil {
			return err
		}
		uc, err = net.ListenPacket("udp6", net.JoinHostPort(eip.String(), "0"))
		return err
	})
	defer ln.Close()
	defer uc.Close()
	// The server echoes what it reads until EOF.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()

	// TCP: a connection, and 1.2 MB each way: the client's kernel hands
	// the switch frames of up to 64 KB (segmentation offload).
	var c net.Conn
	cl.do(t, func() error {
		var err error
		c, err = net.DialTimeout("tcp6", ln.Addr().String(), 10*time.Second)
		return err
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := bytes.Repeat([]byte("v6pod "), 200000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo through the switch: %v; stats %+v", err, ports.Stats())
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}

	// UDP: a datagram through the switch arrives (the kernel drops bad
	// checksums silently).
	var cu net.Conn
	cl.do(t, func() error {
		var err error
		cu, err = net.Dial("udp6", uc.LocalAddr().String())
		return err
	})
	defer cu.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := cu.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		uc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := uc.ReadFrom(buf); err == nil && string(buf[:n]) == "ping" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no UDP datagram through the switch; stats %+v", ports.Stats())
		}
	}
	st := ports.Stats()
	if st.Checksums == 0 {
		t.Fatalf("no checksum completed: %+v", st)
	}
	if st.Segmented == 0 {
		t.Logf("no frame needed segmenting (segmentation offload off on this kernel's veth?)")
	}
	t.Logf("stats %+v", st)
}

func TestAuxStatus(t *testing.T) {
	cmsg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	aux := make([]byte, unsafe.Sizeof(unix.TpacketAuxdata{}))
	(*unix.TpacketAuxdata)(unsafe.Pointer(&aux[0])).Status = unix.TP_STATUS_CSUMNOTREADY | unix.TP_STATUS_USER
	other := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMP, make([]byte, 16))
	for _, tc := range []struct {
		oob  []byte
		want uint32
		ok   bool
	}{
		{cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, aux), unix.TP_STATUS_CSUMNOTREADY | unix.TP_STATUS_USER, true},
		{append(other, cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, aux)...), unix.TP_STATUS_CSUMNOTREADY | unix.TP_STATUS_USER, true},
		{other, 0, false},
		{nil, 0, false},
		{cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, aux[:4]), 0, false},
		{cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, aux)[:20], 0, false},
	} {
		st, ok := auxStatus(tc.oob)
		if st != tc.want || ok != tc.ok {
			t.Errorf("%x: %#x %v, want %#x %v", tc.oob, st, ok, tc.want, tc.ok)
		}
	}
	oob := cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, aux)
	if a := testing.AllocsPerRun(100, func() { auxStatus(oob) }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

func FuzzAuxStatus(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The kernel aligns control messages; so does the buffer here.
		oob := make([]uint64, (len(b)+7)/8)
		buf := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(oob))), len(oob)*8)[:len(b)]
		copy(buf, b)
		auxStatus(buf)
	})
}
