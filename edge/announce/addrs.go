package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addAddresses puts each VIP address on the interface named ifname (lo,
// or a dummy interface it creates when missing) and returns the ones it
// added; addresses already there are left alone and not returned, so they
// are never removed either. IPv6 addresses skip duplicate address
// detection (they are anycast by design).
func addAddresses(ifname string, vips []netip.Prefix) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) || ifname == "lo" {
			return nil, fmt.Errorf("interface %s: %w", ifname, err)
		}
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: ifname}}); err != nil {
			return nil, fmt.Errorf("create dummy interface %s: %w", ifname, err)
		}
		if link, err = netlink.LinkByName(ifname); err != nil {
			return nil, fmt.Errorf("interface %s: %w", ifname, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", ifname, err)
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	present := map[netip.Addr]bool{}
	for _, a := range have {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			present[ip.Unmap()] = true
		}
	}
	var added []netip.Prefix
	for _, v := range vips {
		if present[v.Addr()] {
			continue
		}
		if err := netlink.AddrAdd(link, nlAddr(v)); err != nil && !errors.Is(err, unix.EEXIST) {
			return added, fmt.Errorf("add %s to %s: %w", v, ifname, err)
		}
		added = append(added, v)
	}
	return added, nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// removeAddresses removes the addresses the speaker added. Callers make
// sure their withdrawal went out first (Shutdown, or the sessions are
// closed).
func (s *Speaker) removeAddresses() {
	s.mu.Lock()
	added := s.addrsAdded
	s.addrsAdded = nil
	s.mu.Unlock()
	if len(added) == 0 {
		return
	}
	link, err := netlink.LinkByName(s.cfg.Interface)
	if err != nil {
		s.log.Warn("bgp: remove VIP addresses", "interface", s.cfg.Interface, "err", err)
		return
	}
	for _, v := range added {
		if err := netlink.AddrDel(link, nlAddr(v)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			s.log.Warn("bgp: remove VIP address", "interface", s.cfg.Interface, "addr", v, "err", err)
		}
	}
	s.log.Info("bgp: VIP addresses removed", "interface", s.cfg.Interface, "count", len(added))
}
