package sim

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"testing"
	"time"

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
