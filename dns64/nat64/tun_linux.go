package nat64

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// openTUN creates (or attaches to) the TUN device name with n queues
// (IFF_TUN|IFF_NO_PI, IFF_MULTI_QUEUE when n > 1). The queues are
// non-blocking descriptors that the workers read directly and poll(2)
// together with a wake-up eventfd when empty: no Go poller, no goroutine
// park per packet.
func openTUN(name string, n int, offload bool) ([]int, error) {
	var files []int
	fail := func(err error) ([]int, error) {
		for _, f := range files {
			unix.Close(f)
		}
		return nil, err
	}
	for i := 0; i < n; i++ {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("nat64: open /dev/net/tun: %w", err))
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("nat64: tun %q: %w", name, err))
		}
		flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if n > 1 {
			flags |= unix.IFF_MULTI_QUEUE
		}
		if offload {
			flags |= unix.IFF_VNET_HDR
		}
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("nat64: TUNSETIFF %s (queue %d): %w", name, i, err))
		}
		if offload {
			// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
			if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0x01|0x02|0x04|0x08); err != nil {
				unix.Close(fd)
				return fail(fmt.Errorf("nat64: TUNSETOFFLOAD %s: %w", name, err))
			}
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("nat64: tun %s: %w", name, err))
		}
		files = append(files, fd)
	}
	return files, nil
}

// setupLink sets the MTU, brings the device up and, unless noRoutes,
// routes pool6 and the pool4 addresses into it.
func setupLink(name string, mtu int, pool6 netip.Prefix, pool4 [][2]uint32, noRoutes bool) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("nat64: link %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("nat64: link %s mtu %d: %w", name, mtu, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("nat64: link %s up: %w", name, err)
	}
	if noRoutes {
		return nil
	}
	dsts := []*net.IPNet{{IP: pool6.Addr().AsSlice(), Mask: net.CIDRMask(pool6.Bits(), 128)}}
	for _, r := range pool4 {
		dsts = append(dsts, rangeToPrefixes(r[0], r[1])...)
	}
	for _, d := range dsts {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: d, Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(rt); err != nil {
			return fmt.Errorf("nat64: route %s dev %s: %w", d, name, err)
		}
	}
	return nil
}

// rangeToPrefixes covers [lo, hi] with the fewest IPv4 prefixes.
func rangeToPrefixes(lo, hi uint32) []*net.IPNet {
	var out []*net.IPNet
	for lo <= hi {
		bits := 32
		for bits > 0 {
			size := uint32(1) << (32 - (bits - 1))
			if lo%size != 0 || uint64(lo)+uint64(size)-1 > uint64(hi) {
				break
			}
			bits--
		}
		ip := net.IPv4(byte(lo>>24), byte(lo>>16), byte(lo>>8), byte(lo)).To4()
		out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, 32)})
		next := uint64(lo) + uint64(1)<<(32-bits)
		if next > uint64(hi) {
			break
		}
		lo = uint32(next)
	}
	return out
}

// queueReader reads packets from a non-blocking TUN queue, sleeping in
// poll(2) when it is empty until a packet or the stop eventfd arrives.
type queueReader struct {
	fd, stop int
	pfd      [2]unix.PollFd
}

var errStopped = errors.New("stopped")

func newQueueReader(fd, stop int) *queueReader {
	q := &queueReader{fd: fd, stop: stop}
	q.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	q.pfd[1] = unix.PollFd{Fd: int32(stop), Events: unix.POLLIN}
	return q
}

func (q *queueReader) read(b []byte) (int, error) {
	for {
		n, err := unix.Read(q.fd, b)
		if err == nil {
			return n, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return 0, os.NewSyscallError("read", err)
		}
		if err == unix.EAGAIN {
			if _, err := unix.Poll(q.pfd[:], -1); err != nil && err != unix.EINTR {
				return 0, os.NewSyscallError("poll", err)
			}
			if q.pfd[1].Revents != 0 {
				return 0, errStopped
			}
		}
	}
}

func (q *queueReader) write(b []byte) error {
	for {
		_, err := unix.Write(q.fd, b)
		if err == unix.EINTR {
			continue
		}
		return err // per-packet errors (EINVAL, ENOBUFS...) are not fatal
	}
}
