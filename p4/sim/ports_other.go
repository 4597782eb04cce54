//go:build !linux

package sim

import (
	"context"
	"errors"
)

// Ports needs Linux AF_PACKET sockets.
type Ports struct{}

// PortStats counts frames by verdict.
type PortStats struct {
	Received, Sent int64
	Checksums      int64
	Segmented      int64
	Verdicts       map[string]int64
}

// OpenPorts is not supported outside Linux.
func OpenPorts(map[uint32]string) (*Ports, error) { return nil, errors.New("sim: ports need Linux") }

// Run is not supported outside Linux.
func (p *Ports) Run(context.Context, *Sim) error { return errors.New("sim: ports need Linux") }

// Close does nothing.
func (p *Ports) Close() {}

// Stats returns nothing.
func (p *Ports) Stats() PortStats { return PortStats{} }

// Names returns nothing.
func (p *Ports) Names() []string { return nil }
