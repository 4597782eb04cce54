package nat64

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bindingLog writes one line per binding created or removed (RFC 6888
// REQ-12):
//
//	2026-11-22T02:41:55.123456Z nat64-binding add proto=tcp v6=[2001:db8::1]:40000 v4=198.51.100.3:51234
//
// Fields are space-separated key=value after the time, the event and the
// action (add or del); ParseBindingLine reads them back.
type bindingLog struct {
	mu  sync.Mutex
	w   *bufio.Writer
	c   io.Closer
	buf []byte
}

func openBindingLog(dest string, w io.Writer) (*bindingLog, error) {
	if w != nil {
		return &bindingLog{w: bufio.NewWriter(w)}, nil
	}
	switch dest {
	case "":
		return nil, nil
	case "stdout", "-":
		return &bindingLog{w: bufio.NewWriter(os.Stdout)}, nil
	case "stderr":
		return &bindingLog{w: bufio.NewWriter(os.Stderr)}, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("nat64: binding_log: %w", err)
	}
	return &bindingLog{w: bufio.NewWriter(f), c: f}, nil
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	default:
		return "icmp"
	}
}

func (l *bindingLog) binding(add bool, now time.Time, b *bib) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.buf[:0]
	x = now.UTC().AppendFormat(x, "2006-01-02T15:04:05.000000Z")
	x = append(x, " nat64-binding "...)
	if add {
		x = append(x, "add"...)
	} else {
		x = append(x, "del"...)
	}
	x = append(x, " proto="...)
	x = append(x, protoName(b.proto)...)
	x = append(x, " v6="...)
	x = netip.AddrPortFrom(netip.AddrFrom16(b.v6), b.port6).AppendTo(x)
	x = append(x, " v4="...)
	x = netip.AddrPortFrom(netip.AddrFrom4(b.v4), b.port4).AppendTo(x)
	x = append(x, '\n')
	l.buf = x
	_, _ = l.w.Write(x)
}

func (l *bindingLog) flush() {
	if l == nil {
		return
	}
	l.mu.Lock()
	_ = l.w.Flush()
	l.mu.Unlock()
}

func (l *bindingLog) close() error {
	if l == nil {
		return nil
	}
	l.flush()
	if l.c != nil {
		return l.c.Close()
	}
	return nil
}

// BindingEvent is one parsed binding log line.
type BindingEvent struct {
	Time  time.Time
	Add   bool
	Proto string
	V6    netip.AddrPort
	V4    netip.AddrPort
}

// ParseBindingLine parses a line of the binding log.
func ParseBindingLine(line string) (BindingEvent, error) {
	var e BindingEvent
	f := strings.Fields(line)
	if len(f) != 6 || f[1] != "nat64-binding" || (f[2] != "add" && f[2] != "del") {
		return e, fmt.Errorf("binding line %q: want TIME nat64-binding add|del proto= v6= v4=", line)
	}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, f[0]); err != nil {
		return e, fmt.Errorf("binding line %q: %w", line, err)
	}
	e.Add = f[2] == "add"
	for _, kv := range f[3:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "proto":
			e.Proto = v
		case "v6":
			e.V6, err = netip.ParseAddrPort(v)
		case "v4":
			e.V4, err = netip.ParseAddrPort(v)
		default:
			err = fmt.Errorf("unknown field %s", strconv.Quote(k))
		}
		if err != nil {
			return e, fmt.Errorf("binding line %q: %w", line, err)
		}
	}
	return e, nil
}
