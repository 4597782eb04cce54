//go:build linux && (amd64 || arm64)

package dns64

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgConn reads and writes batches with recvmmsg/sendmmsg issued as raw
// system calls on the non-blocking socket, parking on the runtime's poller
// only when nothing is ready. Raw calls matter at moderate load: a plain
// syscall wakes the runtime's sysmon thread after every idle spell, which
// cost about a sixth of the CPU at 20k queries/s in the profile.
type mmsgConn struct {
	rc   syscall.RawConn
	v6   bool // AF_INET6 socket (possibly dual-stack)
	rh   []mmsghdr
	riov []unix.Iovec
	rsa  []unix.RawSockaddrInet6 // large enough for either family
	wh   []mmsghdr
	wiov []unix.Iovec
	wsa  []unix.RawSockaddrInet6
}

// mmsghdr is struct mmsghdr of 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func newBatchConn(c *net.UDPConn, size int) (batchConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	a, _ := c.LocalAddr().(*net.UDPAddr)
	return &mmsgConn{
		rc:   rc,
		v6:   a == nil || a.IP.To4() == nil,
		rh:   make([]mmsghdr, size),
		riov: make([]unix.Iovec, size),
		rsa:  make([]unix.RawSockaddrInet6, size),
		wh:   make([]mmsghdr, size),
		wiov: make([]unix.Iovec, size),
		wsa:  make([]unix.RawSockaddrInet6, size),
	}, nil
}

func (m *mmsgConn) readBatch(ms []udpMsg) (int, error) {
	n := min(len(ms), len(m.rh))
	for i := range n {
		m.riov[i].Base = &ms[i].buf[0]
		m.riov[i].SetLen(len(ms[i].buf))
		h := &m.rh[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&m.rsa[i])), Namelen: uint32(unsafe.Sizeof(m.rsa[i])), Iov: &m.riov[i]}
		h.SetIovlen(1)
	}
	var got int
	var errno syscall.Errno
	err := m.rc.Read(func(fd uintptr) bool {
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rh[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		got, errno = int(r), e
		return true
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	for i := range got {
		ms[i].n = int(m.rh[i].n)
		ms[i].addr = fromSockaddr(&m.rsa[i])
	}
	return got, nil
}

func (m *mmsgConn) writeBatch(ms []udpMsg) (int, error) {
	n := min(len(ms), len(m.wh))
	for i := range n {
		m.wiov[i].Base = &ms[i].buf[0]
		m.wiov[i].SetLen(len(ms[i].buf))
		namelen := toSockaddr(ms[i].addr, &m.wsa[i], m.v6)
		h := &m.wh[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&m.wsa[i])), Namelen: namelen, Iov: &m.wiov[i]}
		h.SetIovlen(1)
	}
	var sent int
	var errno syscall.Errno
	err := m.rc.Write(func(fd uintptr) bool {
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.wh[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		sent, errno = int(r), e
		return true
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return sent, nil
}

func fromSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// toSockaddr fills sa for ap on a socket of the given family and returns
// its length.
func toSockaddr(ap netip.AddrPort, sa *unix.RawSockaddrInet6, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet6
}
