package packet

import "encoding/binary"

// Header sizes and protocol numbers.
const (
	IPv4MinHeaderLen = 20
	IPv6HeaderLen    = 40
	IPv6FragHdrLen   = 8
	UDPHeaderLen     = 8
	TCPMinHeaderLen  = 20
	ICMPHeaderLen    = 8

	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoICMPv6   = 58
	ProtoHopByHop = 0
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoDestOpts = 60
	ProtoNoNext   = 59
)

// IPv4 header offsets.
const (
	IPv4VersionIHL = 0
	IPv4TOS        = 1
	IPv4TotalLen   = 2
	IPv4ID         = 4
	IPv4FlagsFrag  = 6
	IPv4TTL        = 8
	IPv4Protocol   = 9
	IPv4Checksum   = 10
	IPv4Src        = 12
	IPv4Dst        = 16

	IPv4FlagDF       = 0x4000
	IPv4FlagMF       = 0x2000
	IPv4FragOffMask  = 0x1fff
	IPv6FragOffMask  = 0xfff8
	IPv6FragMoreFlag = 0x0001
)

// IPv6 header offsets.
const (
	IPv6PayloadLen = 4
	IPv6NextHeader = 6
	IPv6HopLimit   = 7
	IPv6Src        = 8
	IPv6Dst        = 24
)

// Transport header offsets (relative to the transport header).
const (
	SrcPort     = 0
	DstPort     = 2
	UDPLength   = 4
	UDPChecksum = 6
	TCPFlags    = 13
	TCPChecksum = 16
	ICMPType    = 0
	ICMPCode    = 1
	ICMPCsum    = 2
	ICMPIdent   = 4 // echo identifier; also the MTU/pointer word of errors
	ICMPSeq     = 6

	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagACK = 0x10
)

// IPv4 is a view of an IPv4 header (the caller checks the length).
type IPv4 []byte

// HeaderLen is IHL*4.
func (b IPv4) HeaderLen() int { return int(b[0]&0x0f) * 4 }

// TotalLen is the Total Length field.
func (b IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(b[IPv4TotalLen:])) }

// ID is the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[IPv4ID:]) }

// FlagsFrag is the flags and fragment offset word.
func (b IPv4) FlagsFrag() uint16 { return binary.BigEndian.Uint16(b[IPv4FlagsFrag:]) }

// TTL is the Time To Live.
func (b IPv4) TTL() uint8 { return b[IPv4TTL] }

// Protocol is the Protocol field.
func (b IPv4) Protocol() uint8 { return b[IPv4Protocol] }

// Src returns the source address.
func (b IPv4) Src() [4]byte { return [4]byte(b[IPv4Src : IPv4Src+4]) }

// Dst returns the destination address.
func (b IPv4) Dst() [4]byte { return [4]byte(b[IPv4Dst : IPv4Dst+4]) }

// IsFragment reports MF set or a non-zero offset.
func (b IPv4) IsFragment() bool { return b.FlagsFrag()&(IPv4FlagMF|IPv4FragOffMask) != 0 }

// SetChecksum computes and stores the header checksum.
func (b IPv4) SetChecksum() {
	b[IPv4Checksum], b[IPv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[IPv4Checksum:], Checksum(b[:b.HeaderLen()], 0))
}

// IPv4Fields are the fields Encode writes.
type IPv4Fields struct {
	TOS       uint8
	TotalLen  uint16
	ID        uint16
	FlagsFrag uint16
	TTL       uint8
	Protocol  uint8
	Src, Dst  [4]byte
}

// Encode writes a 20-byte header without options and its checksum.
func (b IPv4) Encode(f *IPv4Fields) {
	_ = b[19]
	b[0] = 0x45
	b[1] = f.TOS
	binary.BigEndian.PutUint16(b[2:], f.TotalLen)
	binary.BigEndian.PutUint16(b[4:], f.ID)
	binary.BigEndian.PutUint16(b[6:], f.FlagsFrag)
	b[8] = f.TTL
	b[9] = f.Protocol
	b[10], b[11] = 0, 0
	copy(b[12:16], f.Src[:])
	copy(b[16:20], f.Dst[:])
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:20], 0))
}

// IPv6 is a view of an IPv6 header (the caller checks the length).
type IPv6 []byte

// TrafficClass is the Traffic Class field.
func (b IPv6) TrafficClass() uint8 { return b[0]<<4 | b[1]>>4 }

// PayloadLen is the Payload Length field.
func (b IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(b[IPv6PayloadLen:])) }

// NextHeader is the Next Header field.
func (b IPv6) NextHeader() uint8 { return b[IPv6NextHeader] }

// HopLimit is the Hop Limit field.
func (b IPv6) HopLimit() uint8 { return b[IPv6HopLimit] }

// Src returns the source address.
func (b IPv6) Src() [16]byte { return [16]byte(b[IPv6Src : IPv6Src+16]) }

// Dst returns the destination address.
func (b IPv6) Dst() [16]byte { return [16]byte(b[IPv6Dst : IPv6Dst+16]) }

// IPv6Fields are the fields Encode writes (flow label zero).
type IPv6Fields struct {
	TrafficClass uint8
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     [16]byte
}

// Encode writes the 40-byte header.
func (b IPv6) Encode(f *IPv6Fields) {
	_ = b[39]
	b[0] = 0x60 | f.TrafficClass>>4
	b[1] = f.TrafficClass << 4
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint16(b[4:], f.PayloadLen)
	b[6] = f.NextHeader
	b[7] = f.HopLimit
	copy(b[8:24], f.Src[:])
	copy(b[24:40], f.Dst[:])
}
