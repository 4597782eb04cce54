package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ports attaches the simulator to network interfaces, one per switch
// port, with AF_PACKET sockets: every frame received on a port runs
// through Process and a forwarded frame leaves by its egress port. It
// needs CAP_NET_RAW. The interfaces should carry no addresses of their own
// (the kernel would answer on them too).
//
// A frame a local socket sent over a veth (or any device with transmit
// checksum offload) arrives with its TCP/UDP checksum unfinished: the
// kernel flags it TP_STATUS_CSUMNOTREADY in the PACKET_AUXDATA the port
// sockets ask for, and the simulator computes the checksum before the
// frame goes through the pipeline (FinishChecksum), as the device would
// have.
type Ports struct {
	ports map[uint32]*port
	stats map[Verdict]*atomic.Int64
	rx    atomic.Int64
	tx    atomic.Int64
	csum  atomic.Int64
	gso   atomic.Int64
}

type port struct {
	num  uint32
	name string
	mtu  int // when it opened
	f    *os.File
}

// OpenPorts opens a socket on each interface (port number → name) in the
// calling thread's network namespace.
func OpenPorts(ifaces map[uint32]string) (*Ports, error) {
	p := &Ports{ports: map[uint32]*port{}, stats: map[Verdict]*atomic.Int64{}}
	for v := Forwarded; v <= DropNoPipe; v++ {
		p.stats[v] = new(atomic.Int64)
	}
	for num, name := range ifaces {
		if num >= 512 {
			p.Close()
			return nil, fmt.Errorf("sim: port %d does not fit 9 bits", num)
		}
		f, err := openRaw(name)
		if err != nil {
			p.Close()
			return nil, err
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			f.Close()
			p.Close()
			return nil, fmt.Errorf("sim: port %s: %w", name, err)
		}
		p.ports[num] = &port{num: num, name: name, mtu: ifi.MTU, f: f}
	}
	return p, nil
}

func openRaw(name string) (*os.File, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("sim: port %s: %w", name, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("sim: port %s: socket: %w", name, err)
	}
	// Only frames the interface receives, never our own transmissions.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	// tp_status with every frame: whether its checksum is unfinished.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sim: port %s: PACKET_AUXDATA: %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sim: port %s: bind: %w", name, err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sim: port %s: promiscuous: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "packet:"+name), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Run forwards frames until ctx ends, then closes the sockets.
func (p *Ports) Run(ctx context.Context, s *Sim) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(p.ports))
	for _, pt := range p.ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- p.serve(s, pt)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	p.Close()
	wg.Wait()
	return err
}

func (p *Ports) serve(s *Sim, in *port) error {
	rc, err := in.f.SyscallConn()
	if err != nil {
		return err
	}
	var r receiver
	r.init(make([]byte, 65536))
	seg := make([]byte, 65536)
	read := func(fd uintptr) bool { return r.recv(fd) }
	for {
		if err := rc.Read(read); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sim: port %s: %w", in.name, err)
		}
		if r.err != nil || r.from.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frame := r.buf[:r.n]
		p.rx.Add(1)
		res := s.Process(frame)
		p.stats[res.Verdict].Add(1)
		if res.Verdict != Forwarded {
			continue
		}
		out, ok := p.ports[res.Port]
		if !ok {
			p.stats[DropNoSlot].Add(1)
			continue
		}
		// Process copied the frame: finish it there.
		if len(res.Frame)-ethLen > out.mtu {
			if n, ok := tcpSegments(res.Frame, out.mtu); ok {
				p.gso.Add(1)
				for i := range n {
					if _, err := out.f.Write(tcpSegment(seg, res.Frame, out.mtu, i)); err == nil {
						p.tx.Add(1)
					}
				}
				continue
			}
		}
		if st, ok := auxStatus(r.oob[:r.msg.Controllen]); ok && st&unix.TP_STATUS_CSUMNOTREADY != 0 && FinishChecksum(res.Frame) {
			p.csum.Add(1)
		}
		if _, err := out.f.Write(res.Frame); err == nil {
			p.tx.Add(1)
		}
	}
}

// receiver reads frames with recvmsg into buffers it owns, so a read
// allocates nothing (unix.Recvmsg would allocate the source address).
type receiver struct {
	buf  []byte
	oob  [64]byte // one cmsg of tpacket_auxdata, with room to spare
	from unix.RawSockaddrLinklayer
	iov  unix.Iovec
	msg  unix.Msghdr
	n    int
	err  error
}

func (r *receiver) init(buf []byte) {
	r.buf = buf
	r.iov.Base = &buf[0]
	r.iov.SetLen(len(buf))
	r.msg.Name = (*byte)(unsafe.Pointer(&r.from))
	r.msg.Iov = &r.iov
	r.msg.Iovlen = 1
	r.msg.Control = &r.oob[0]
}

// recv reads one frame; false asks the poller to wait (EAGAIN).
func (r *receiver) recv(fd uintptr) bool {
	r.msg.Namelen = uint32(unsafe.Sizeof(r.from))
	r.msg.SetControllen(len(r.oob))
	r.msg.Flags = 0
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
	if e == unix.EAGAIN {
		return false
	}
	r.n, r.err = int(n), nil
	if e != 0 {
		r.n, r.err = 0, e
	}
	return true
}

// auxStatus returns tp_status from the PACKET_AUXDATA control message in
// oob, if there is one.
func auxStatus(oob []byte) (uint32, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0, false
		}
		data := oob[unix.CmsgLen(0):l]
		if h.Level == unix.SOL_PACKET && h.Type == unix.PACKET_AUXDATA && len(data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			return (*unix.TpacketAuxdata)(unsafe.Pointer(&data[0])).Status, true
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return 0, false
		}
		oob = oob[next:]
	}
	return 0, false
}

// Close closes the sockets.
func (p *Ports) Close() {
	for _, pt := range p.ports {
		pt.f.Close()
	}
}

// PortStats counts frames by verdict.
type PortStats struct {
	Received, Sent int64
	Checksums      int64 // frames whose unfinished checksum the simulator completed
	Segmented      int64 // TCP frames over the egress MTU cut into segments
	Verdicts       map[string]int64
}

// Stats returns the frame counts so far.
func (p *Ports) Stats() PortStats {
	st := PortStats{Received: p.rx.Load(), Sent: p.tx.Load(), Checksums: p.csum.Load(), Segmented: p.gso.Load(), Verdicts: map[string]int64{}}
	for v, c := range p.stats {
		st.Verdicts[v.String()] = c.Load()
	}
	return st
}

// Names returns "port=interface" pairs, sorted by port.
func (p *Ports) Names() []string {
	var nums []int
	for n := range p.ports {
		nums = append(nums, int(n))
	}
	sort.Ints(nums)
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = fmt.Sprintf("%d=%s", n, p.ports[uint32(n)].name)
	}
	return out
}
