package controller

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NeighborFunc resolves a next hop to a MAC (the kernel's neighbour table
// by default).
type NeighborFunc func(netip.Addr) ([6]byte, bool)

// WithNeighbors replaces the kernel neighbour table lookup.
func WithNeighbors(f NeighborFunc) Option { return func(c *Controller) { c.neigh = f } }

// kernelNeighbor looks nh up in the kernel's neighbour table (any link,
// any usable state).
func kernelNeighbor(nh netip.Addr) ([6]byte, bool) {
	family := unix.AF_INET6
	if nh.Is4() {
		family = unix.AF_INET
	}
	ns, err := netlink.NeighList(0, family)
	if err != nil {
		return [6]byte{}, false
	}
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap() != nh || len(n.HardwareAddr) != 6 {
			continue
		}
		if n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) != 0 || n.State == netlink.NUD_NONE {
			continue
		}
		var mac [6]byte
		copy(mac[:], n.HardwareAddr)
		return mac, true
	}
	solicit(nh)
	return [6]byte{}, false
}

// solicit makes the kernel resolve nh: a neighbour entry exists only once
// something sent to the address, and the controller itself may never
// talk to a server (its BGP session can come from another address). One
// UDP datagram to the discard port starts neighbour discovery (or ARP);
// a later sync finds the entry.
func solicit(nh netip.Addr) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(nh, 9)))
	if err != nil {
		return
	}
	c.Write([]byte{0})
	c.Close()
}

// resolve returns a server's MAC: the configured one, else the kernel's
// neighbour entry, else the last MAC seen for it (kernel entries expire
// when unused; a server must not lose its slots for that).
func (c *Controller) resolve(sc *ServerConfig) ([6]byte, bool) {
	if sc.MAC != "" {
		return sc.mac, true
	}
	if mac, ok := c.neigh(sc.nh); ok {
		c.macs[sc.nh] = mac
		return mac, true
	}
	mac, ok := c.macs[sc.nh]
	return mac, ok
}
