//go:build linux && (amd64 || arm64)

package razor

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP in batches: recvmmsg(2) takes every datagram waiting (up to
// udpBatch) in one system call, sendmmsg(2) sends all the answers in one,
// on memory the worker owns, so a busy server makes two system calls per
// batch instead of two per query, and allocates nothing.

const (
	udpBatch   = 32
	udpInSize  = 4096       // a query bigger than this is cut (MSG_TRUNC) and dropped
	udpOutSize = maxUDPSize // Validate caps edns_udp_size to it
)

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type udpBatcher struct {
	in, out [udpBatch]mmsghdr
	inIov   [udpBatch]unix.Iovec
	outIov  [udpBatch]unix.Iovec
	names   [udpBatch][unix.SizeofSockaddrInet6]byte
	inBuf   [udpBatch][udpInSize]byte
	outBuf  [udpBatch][udpOutSize]byte
	ctrl    [udpBatch][128]byte
}

func (s *Server) serveUDPBatch(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	// On a wildcard address, ask for each datagram's destination
	// (IP_PKTINFO, IPV6_PKTINFO) and hand it back when sending, so the
	// answer leaves from the address the query went to.
	pktinfo := false
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.IP.IsUnspecified() {
		_ = rc.Control(func(fd uintptr) {
			if la.IP.To4() != nil {
				pktinfo = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) == nil
			} else {
				pktinfo = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) == nil
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
	}
	b := new(udpBatcher)
	for i := range udpBatch {
		if pktinfo {
			b.in[i].hdr.Control = &b.ctrl[i][0]
		}
		b.inIov[i].Base = &b.inBuf[i][0]
		b.inIov[i].SetLen(udpInSize)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.in[i].hdr.Name = &b.names[i][0]
		b.out[i].hdr.Iov = &b.outIov[i]
		b.out[i].hdr.SetIovlen(1)
	}
	sc := newScratch()
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for i := range udpBatch {
				b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
				b.in[i].hdr.Flags = 0
				if pktinfo {
					b.in[i].hdr.SetControllen(len(b.ctrl[i]))
				}
			}
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), udpBatch,
				unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN || e == unix.EINTR {
				return false
			}
			n, rerr = int(r), nil
			if e != 0 {
				n, rerr = 0, e
			}
			return true
		})
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return true
			}
			continue
		}
		if rerr != nil {
			continue
		}
		k := 0 // answers to send
		for i := range n {
			h := &b.in[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				s.m.proto[0].Inc()
				s.m.dropped.Inc()
				continue
			}
			src, ok := sockaddrToAddrPort(b.names[i][:h.hdr.Namelen])
			if !ok {
				continue
			}
			out := s.respondSafe(sc, b.inBuf[i][:h.n], src, false)
			if out == nil || len(out) > udpOutSize {
				continue
			}
			copy(b.outBuf[k][:], out)
			b.outIov[k].Base = &b.outBuf[k][0]
			b.outIov[k].SetLen(len(out))
			b.out[k].hdr.Name = &b.names[i][0]
			b.out[k].hdr.Namelen = h.hdr.Namelen
			b.out[k].hdr.Control = nil
			b.out[k].hdr.SetControllen(0)
			if pktinfo && h.hdr.Controllen > 0 {
				b.out[k].hdr.Control = &b.ctrl[i][0]
				b.out[k].hdr.SetControllen(int(h.hdr.Controllen))
			}
			k++
		}
		for sent := 0; sent < k; {
			var werr error
			err := rc.Write(func(fd uintptr) bool {
				r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[sent])), uintptr(k-sent), 0, 0, 0)
				if e == unix.EAGAIN || e == unix.EINTR {
					return false
				}
				if e != 0 {
					werr = e
					return true
				}
				sent += int(r)
				return true
			})
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return true
				}
				break
			}
			if werr != nil {
				sent++ // skip the datagram the kernel refused (e.g. unreachable)
			}
		}
	}
}

// sockaddrToAddrPort reads a sockaddr_in or sockaddr_in6.
func sockaddrToAddrPort(b []byte) (netip.AddrPort, bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, false
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) < 8 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), true
	case unix.AF_INET6:
		if len(b) < 24 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:])), true
	}
	return netip.AddrPort{}, false
}
