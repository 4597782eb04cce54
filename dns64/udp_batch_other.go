//go:build !(linux && (amd64 || arm64))

package dns64

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// xnetConn batches through golang.org/x/net (recvmmsg where the platform
// has it, one datagram per call elsewhere).
type xnetConn struct {
	pc interface {
		ReadBatch(ms []ipv4.Message, flags int) (int, error)
		WriteBatch(ms []ipv4.Message, flags int) (int, error)
	}
	in, out []ipv4.Message
}

func newBatchConn(c *net.UDPConn, size int) (batchConn, error) {
	x := &xnetConn{in: make([]ipv4.Message, size), out: make([]ipv4.Message, size)}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		x.pc = ipv4.NewPacketConn(c)
	} else {
		x.pc = ipv6.NewPacketConn(c)
	}
	for i := range x.in {
		x.in[i].Buffers = [][]byte{nil}
		x.out[i].Buffers = [][]byte{nil}
	}
	return x, nil
}

func (x *xnetConn) readBatch(ms []udpMsg) (int, error) {
	n := min(len(ms), len(x.in))
	for i := range n {
		x.in[i].Buffers[0] = ms[i].buf
	}
	got, err := x.pc.ReadBatch(x.in[:n], 0)
	for i := range got {
		ms[i].n = x.in[i].N
		if a, ok := x.in[i].Addr.(*net.UDPAddr); ok {
			ms[i].addr = a.AddrPort()
		}
	}
	return got, err
}

func (x *xnetConn) writeBatch(ms []udpMsg) (int, error) {
	n := min(len(ms), len(x.out))
	for i := range n {
		x.out[i].Buffers[0] = ms[i].buf
		x.out[i].Addr = net.UDPAddrFromAddrPort(ms[i].addr)
	}
	return x.pc.WriteBatch(x.out[:n], 0)
}
