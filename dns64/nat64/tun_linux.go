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
// (IFF_TUN|IFF_NO_PI, IFF_MULTI_QUEUE when n > 1). Each queue is a
// non-blocking file served by Go's poller, so Close unblocks readers.
func openTUN(name string, n int) ([]*os.File, error) {
	var files []*os.File
	fail := func(err error) ([]*os.File, error) {
		for _, f := range files {
			f.Close()
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
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("nat64: TUNSETIFF %s (queue %d): %w", name, i, err))
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("nat64: tun %s: %w", name, err))
		}
		files = append(files, os.NewFile(uintptr(fd), "/dev/net/tun:"+name))
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
		for _, p := range rangeToPrefixes(r[0], r[1]) {
			dsts = append(dsts, p)
		}
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

func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed)
}
