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

	"golang.org/x/sys/unix"
)

// Ports attaches the simulator to network interfaces, one per switch
// port, with AF_PACKET sockets: every frame received on a port runs
// through Process and a forwarded frame leaves by its egress port. It
// needs CAP_NET_RAW. The interfaces should carry no addresses of their own
// (the kernel would answer on them too).
type Ports struct {
	ports map[uint32]*port
	stats map[Verdict]*atomic.Int64
	rx    atomic.Int64
	tx    atomic.Int64
}

type port struct {
	num  uint32
	name string
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
		p.ports[num] = &port{num: num, name: name, f: f}
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
	buf := make([]byte, 65536)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sim: port %s: %w", in.name, err)
		}
		if rerr != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p.rx.Add(1)
		r := s.Process(buf[:n])
		p.stats[r.Verdict].Add(1)
		if r.Verdict != Forwarded {
			continue
		}
		out, ok := p.ports[r.Port]
		if !ok {
			p.stats[DropNoSlot].Add(1)
			continue
		}
		if _, err := out.f.Write(r.Frame); err == nil {
			p.tx.Add(1)
		}
	}
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
	Verdicts       map[string]int64
}

// Stats returns the frame counts so far.
func (p *Ports) Stats() PortStats {
	st := PortStats{Received: p.rx.Load(), Sent: p.tx.Load(), Verdicts: map[string]int64{}}
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
