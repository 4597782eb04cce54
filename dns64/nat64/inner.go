package nat64

import "github.com/v6pod/v6pod/dns64/nat64/packet"

// rewriteInnerPort sets the port at off of o, the TCP or UDP header of the
// packet an ICMP error carries (as much of it as the error holds), and
// updates its checksum incrementally for the new port and for the addresses,
// whose sum changes from oldAddrs to newAddrs (RFC 7915 4.5 and 5.3 on the
// inner packet). A zero UDP checksum stays zero, since none was computed,
// and a checksum the error cut off is left alone.
func rewriteInnerPort(o []byte, proto uint8, off int, port, oldAddrs, newAddrs uint16) {
	old := be.Uint16(o[off:])
	be.PutUint16(o[off:], port)
	co := packet.TCPChecksum
	if proto == protoUDP {
		co = packet.UDPChecksum
	}
	if len(o) < co+2 || proto == protoUDP && be.Uint16(o[co:]) == 0 {
		return
	}
	c := packet.UpdateSum(be.Uint16(o[co:]), packet.Combine(oldAddrs, old), packet.Combine(newAddrs, port))
	if proto == protoUDP && c == 0 {
		c = 0xffff
	}
	be.PutUint16(o[co:], c)
}
