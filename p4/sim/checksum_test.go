package sim

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// verify checks a frame's TCP/UDP checksum the way a receiver does: the
// ones' complement sum over pseudo-header and segment, checksum included,
// is all ones.
func verify(t *testing.T, f []byte) {
	t.Helper()
	ip := f[ethLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	var ph [40]byte
	copy(ph[:32], ip[8:40])
	binary.BigEndian.PutUint32(ph[32:], uint32(plen))
	ph[39] = ip[6]
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ph[:])
	add(ip[ip6Len : ip6Len+plen])
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Fatalf("checksum does not verify: sum %#x", sum)
	}
}

func withPayload(f []byte, n int) []byte {
	for i := range n {
		f = append(f, byte(i*7+3))
	}
	binary.BigEndian.PutUint16(f[ethLen+4:], uint16(len(f)-ethLen-ip6Len))
	return f
}

func TestFinishChecksum(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   int
		payload int
	}{{"tcp syn", 0x02, 0}, {"tcp odd", 0x18, 1001}, {"udp", -1, 12}, {"udp odd", -1, 7}} {
		f := withPayload(frame(client6, eip, 40000, 443, tc.flags), tc.payload)
		// What the kernel leaves with CHECKSUM_PARTIAL: some partial sum.
		at := ethLen + ip6Len + 16
		if tc.flags < 0 {
			at = ethLen + ip6Len + 6
		}
		binary.BigEndian.PutUint16(f[at:], 0x1234)
		if !FinishChecksum(f) {
			t.Fatalf("%s: not finished", tc.name)
		}
		verify(t, f)
		// Idempotent.
		g := append([]byte(nil), f...)
		FinishChecksum(g)
		if !bytes.Equal(f, g) {
			t.Fatalf("%s: a second run changed the frame", tc.name)
		}
	}
	// Left alone: not IPv6, another next header, payload length past the end.
	for _, bad := range [][]byte{
		make([]byte, 100),
		func() []byte { f := frame(client6, eip, 1, 2, 0); f[ethLen+6] = 58; return f }(),
		func() []byte { f := frame(client6, eip, 1, 2, 0); f[ethLen+5]++; return f }(),
		frame(client6, eip, 1, 2, 0)[:ethLen+ip6Len+10],
	} {
		g := append([]byte(nil), bad...)
		if FinishChecksum(g) || !bytes.Equal(g, bad) {
			t.Fatalf("frame %x changed", bad)
		}
	}
}

func TestUDPZeroChecksum(t *testing.T) {
	// Find a payload whose checksum computes to zero: it must go out as
	// 0xffff (zero means "no checksum", forbidden over IPv6).
	f := withPayload(frame(client6, eip, 1, 2, -1), 2)
	p := f[len(f)-2:]
	FinishChecksum(f)
	c := binary.BigEndian.Uint16(f[ethLen+ip6Len+6:])
	// Adding c to the payload word makes the sum all ones: checksum zero.
	v := uint32(binary.BigEndian.Uint16(p)) + uint32(c)
	binary.BigEndian.PutUint16(p, uint16(v+v>>16))
	FinishChecksum(f)
	if got := binary.BigEndian.Uint16(f[ethLen+ip6Len+6:]); got != 0xffff {
		t.Fatalf("checksum %#x, want 0xffff", got)
	}
	verify(t, f)
}

func TestTCPSegment(t *testing.T) {
	const mtu = 1500
	f := withPayload(frame(client6, eip, 40000, 443, 0x80|0x18|0x01), 5000) // CWR PSH ACK FIN
	binary.BigEndian.PutUint32(f[ethLen+ip6Len+4:], 0xffffff00)             // wraps
	n, ok := tcpSegments(f, mtu)
	if !ok || n != 4 { // 1460 per segment
		t.Fatalf("%d segments, %v", n, ok)
	}
	var data []byte
	dst := make([]byte, 65536)
	for i := range n {
		s := tcpSegment(dst, f, mtu, i)
		if len(s)-ethLen > mtu {
			t.Fatalf("segment %d: %d bytes", i, len(s))
		}
		verify(t, s)
		tcp := s[ethLen+ip6Len:]
		if seq := binary.BigEndian.Uint32(tcp[4:]); seq != 0xffffff00+uint32(len(data)) {
			t.Fatalf("segment %d: seq %#x", i, seq)
		}
		want := byte(0x10)
		if i == 0 {
			want |= 0x80
		}
		if i == n-1 {
			want |= 0x09
		}
		if tcp[13] != want {
			t.Fatalf("segment %d: flags %#x, want %#x", i, tcp[13], want)
		}
		if !bytes.Equal(s[:ethLen+4], f[:ethLen+4]) || !bytes.Equal(s[ethLen+6:ethLen+ip6Len+4], f[ethLen+6:ethLen+ip6Len+4]) {
			t.Fatalf("segment %d: headers differ", i)
		}
		data = append(data, tcp[tcpLen:]...)
	}
	if !bytes.Equal(data, f[ethLen+ip6Len+tcpLen:]) {
		t.Fatal("payload differs")
	}
	if n, ok := tcpSegments(f[:100], mtu); ok {
		t.Fatalf("truncated frame: %d segments", n)
	}
	if n, ok := tcpSegments(frame(client6, eip, 1, 2, 0x02), mtu); !ok || n != 1 {
		t.Fatalf("SYN: %d segments, %v", n, ok)
	}
}

func TestChecksumAllocs(t *testing.T) {
	f := withPayload(frame(client6, eip, 40000, 443, 0x18), 20000)
	dst := make([]byte, 65536)
	if a := testing.AllocsPerRun(100, func() {
		FinishChecksum(f)
		n, _ := tcpSegments(f, 1500)
		for i := range n {
			tcpSegment(dst, f, 1500, i)
		}
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

func FuzzFinishChecksum(f *testing.F) {
	f.Add(withPayload(frame(client6, eip, 40000, 443, 0x18), 3000), 1500)
	f.Add(frame(client6, eip, 1, 2, -1), 1280)
	dst := make([]byte, 65536)
	f.Fuzz(func(t *testing.T, b []byte, mtu int) {
		if len(b) > 65535 {
			return
		}
		g := append([]byte(nil), b...)
		if FinishChecksum(g) {
			verify(t, g)
		}
		mtu = 68 + mtu%9000
		if mtu < 68 {
			mtu += 9000
		}
		n, ok := tcpSegments(g, mtu)
		if !ok || n > 1000 {
			return
		}
		for i := range n {
			s := tcpSegment(dst, g, mtu, i)
			if len(s)-ethLen > mtu && n > 1 {
				t.Fatalf("segment %d of %d: %d bytes over mtu %d", i, n, len(s), mtu)
			}
			verify(t, s)
		}
	})
}

func BenchmarkFinishChecksum(b *testing.B) {
	f := withPayload(frame(client6, eip, 40000, 443, 0x18), 1440)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		FinishChecksum(f)
	}
}
