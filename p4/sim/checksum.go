package sim

import "encoding/binary"

// FinishChecksum writes the full TCP or UDP checksum of an Ethernet/IPv6
// frame in place: the IPv6 pseudo-header (RFC 8200 section 8.1) and the
// upper-layer packet the payload length bounds. It is for frames a local
// socket sent with transmit checksum offload (CHECKSUM_PARTIAL: the field
// holds only the pseudo-header sum, the device was to finish it), which
// AF_PACKET hands over unfinished. It reports whether it wrote one: frames
// that are not IPv6 carrying TCP or UDP directly (the headers access.p4
// parses), or whose payload length exceeds the frame, are left as they
// are. It does not allocate.
func FinishChecksum(frame []byte) bool {
	if len(frame) < ethLen+ip6Len || binary.BigEndian.Uint16(frame[ethType:]) != 0x86dd || frame[ethLen]>>4 != 6 {
		return false
	}
	ip := frame[ethLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	if plen > len(ip)-ip6Len {
		return false
	}
	l4 := ip[ip6Len : ip6Len+plen]
	var at int
	switch ip[6] {
	case 6:
		if len(l4) < tcpLen {
			return false
		}
		at = 16
	case 17:
		if len(l4) < udpLen {
			return false
		}
		at = 6
	default:
		return false
	}
	l4[at], l4[at+1] = 0, 0
	// Pseudo-header: source, destination, upper-layer length, next header.
	sum := sum16(ip[8:40], 0) + uint64(plen) + uint64(ip[6])
	c := ^fold(sum16(l4, sum))
	if c == 0 && ip[6] == 17 {
		c = 0xffff // RFC 8200: a computed UDP checksum of zero goes out as all ones
	}
	binary.BigEndian.PutUint16(l4[at:], c)
	return true
}

// sum16 adds b as big-endian 16-bit words (an odd last byte padded with
// zero) to sum, without folding: the ones' complement sum of RFC 1071
// folds the carries at the end.
func sum16(b []byte, sum uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// tcpSegments says into how many segments TCPSegment cuts frame so that
// each IPv6 packet fits mtu; ok is false when frame is no IPv6/TCP frame
// (with its headers and payload length intact) or the MTU leaves no room
// for payload. A frame that fits is one segment.
//
// Such frames come from generic segmentation offload: a local socket hands
// a device that offloads segmentation (a veth does) one frame of up to
// 64 KB, and AF_PACKET reads it whole; the device on the far side of the
// switch would refuse it.
func tcpSegments(frame []byte, mtu int) (n int, ok bool) {
	hl, plen, ok := tcpHeaders(frame)
	if !ok {
		return 0, false
	}
	mss := mtu - ip6Len - (hl - ethLen - ip6Len)
	if mss <= 0 {
		return 0, false
	}
	data := ethLen + ip6Len + plen - hl
	if data <= mss {
		return 1, true
	}
	return (data + mss - 1) / mss, true
}

// tcpSegment writes the i-th of frame's tcpSegments(frame, mtu) segments
// into dst (at least mtu+14 bytes) and returns it, checksum finished, as
// the kernel's tcp_gso_segment cuts them: the same headers, the sequence
// number advanced, CWR on the first segment only, FIN and PSH on the last
// only.
func tcpSegment(dst, frame []byte, mtu, i int) []byte {
	hl, plen, _ := tcpHeaders(frame)
	mss := mtu - ip6Len - (hl - ethLen - ip6Len)
	data := frame[hl : ethLen+ip6Len+plen]
	from := i * mss
	to := min(from+mss, len(data))
	n := copy(dst, frame[:hl])
	n += copy(dst[n:], data[from:to])
	seg := dst[:n]
	binary.BigEndian.PutUint16(seg[ethLen+4:], uint16(n-ethLen-ip6Len))
	tcp := seg[ethLen+ip6Len:]
	binary.BigEndian.PutUint32(tcp[4:], binary.BigEndian.Uint32(tcp[4:])+uint32(from))
	const fin, psh, cwr = 0x01, 0x08, 0x80
	if i > 0 {
		tcp[13] &^= cwr
	}
	if to < len(data) {
		tcp[13] &^= fin | psh
	}
	FinishChecksum(seg)
	return seg
}

// tcpHeaders returns the length of the Ethernet, IPv6 and TCP headers and
// the IPv6 payload length of an IPv6/TCP frame.
func tcpHeaders(frame []byte) (hl, plen int, ok bool) {
	if len(frame) < ethLen+ip6Len+tcpLen || binary.BigEndian.Uint16(frame[ethType:]) != 0x86dd || frame[ethLen+6] != 6 {
		return 0, 0, false
	}
	plen = int(binary.BigEndian.Uint16(frame[ethLen+4:]))
	hl = ethLen + ip6Len + int(frame[ethLen+ip6Len+12]>>4)*4
	if hl < ethLen+ip6Len+tcpLen || ethLen+ip6Len+plen > len(frame) || hl > ethLen+ip6Len+plen {
		return 0, 0, false
	}
	return hl, plen, true
}
