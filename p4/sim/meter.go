package sim

import (
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// Meter colours of v1model.
const (
	green  = 0
	yellow = 1
	red    = 2
)

// meterState is a two-rate three-colour packet meter (RFC 2698) as bmv2
// runs it: a peak bucket (pir, pburst) and a committed bucket (cir,
// cburst), both full at configuration. Unconfigured meters colour
// everything green.
type meterState struct {
	cfg    *p4v1.MeterConfig
	tp, tc float64 // tokens
	last   time.Time
}

func (m *meterState) configure(cfg *p4v1.MeterConfig, now time.Time) {
	m.cfg = cfg
	if cfg == nil {
		return
	}
	m.tp, m.tc = float64(cfg.Pburst), float64(cfg.Cburst)
	m.last = now
}

// colour meters one packet.
func (m *meterState) colour(now time.Time) int {
	c := m.cfg
	if c == nil {
		return green
	}
	if dt := now.Sub(m.last).Seconds(); dt > 0 {
		m.tp = min(float64(c.Pburst), m.tp+dt*float64(c.Pir))
		m.tc = min(float64(c.Cburst), m.tc+dt*float64(c.Cir))
		m.last = now
	}
	if m.tp < 1 {
		return red
	}
	m.tp--
	if m.tc < 1 {
		return yellow
	}
	m.tc--
	return green
}
