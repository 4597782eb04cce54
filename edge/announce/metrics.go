package announce

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one speaker. Prefix and peer labels are bounded by the
// configuration.
type metrics struct {
	peerUp           *prometheus.GaugeVec
	peerTransitions  *prometheus.CounterVec
	announced        *prometheus.GaugeVec
	gshut            *prometheus.GaugeVec
	transitions      *prometheus.CounterVec
	draining         prometheus.Gauge
	drainTransitions *prometheus.CounterVec
	shuttingDown     prometheus.Gauge
	deadman          prometheus.Gauge
	deadmanTrips     prometheus.Counter
	watchdog         prometheus.Gauge
	watchdogTrips    prometheus.Counter
	checks           *prometheus.CounterVec
	statusWrites     *prometheus.CounterVec
	errors           *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		peerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "v6pod_bgp_session_established",
			Help: "1 while the BGP session with the peer is Established.",
		}, []string{"peer"}),
		peerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_session_transitions_total",
			Help: "BGP session state changes, by the state entered.",
		}, []string{"peer", "state"}),
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "v6pod_bgp_prefix_announced",
			Help: "1 while the prefix is announced (with or without 65535:0).",
		}, []string{"prefix", "kind"}),
		gshut: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "v6pod_bgp_prefix_graceful_shutdown",
			Help: "1 while the prefix is announced with GRACEFUL_SHUTDOWN 65535:0.",
		}, []string{"prefix", "kind"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_prefix_transitions_total",
			Help: "Route changes sent, by prefix kind and the state entered.",
		}, []string{"kind", "state"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "v6pod_bgp_draining",
			Help: "1 while the node is drained (drain file, Consul key or API).",
		}),
		drainTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_drain_transitions_total",
			Help: "Drain switched on or off.",
		}, []string{"to"}),
		shuttingDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "v6pod_bgp_shutting_down",
			Help: "1 once the graceful shutdown sequence started.",
		}),
		deadman: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "v6pod_bgp_deadman_tripped",
			Help: "1 while the dead-man holds every route withdrawn.",
		}),
		deadmanTrips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "v6pod_bgp_deadman_trips_total",
			Help: "Times the health loop stalled and every route was withdrawn.",
		}),
		watchdog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "v6pod_bgp_watchdog_tripped",
			Help: "1 while the sessions are shut because the reconciler or GoBGP made no progress.",
		}),
		watchdogTrips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "v6pod_bgp_watchdog_trips_total",
			Help: "Times the reconciler or GoBGP stalled and the sessions were shut.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_checks_total",
			Help: "Local VIP checks, by result.",
		}, []string{"prefix", "result"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_status_writes_total",
			Help: "Writes of the status key to Consul, by result.",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "v6pod_bgp_errors_total",
			Help: "Failed operations: announce, withdraw, consul_drain, panic, api_timeout, watchdog.",
		}, []string{"op"}),
	}
	if err := r.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.peerUp, m.peerTransitions, m.announced, m.gshut, m.transitions,
		m.draining, m.drainTransitions, m.shuttingDown, m.deadman, m.deadmanTrips, m.watchdog, m.watchdogTrips, m.checks, m.statusWrites, m.errors}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}

func (m *metrics) setPrefix(spec prefixSpec, st routeState) {
	l := []string{spec.prefix.String(), string(spec.kind)}
	m.announced.WithLabelValues(l...).Set(b2f(st != stateWithdrawn))
	m.gshut.WithLabelValues(l...).Set(b2f(st == stateGShut))
}

func (m *metrics) peerState(peer, state string) {
	m.peerUp.WithLabelValues(peer).Set(b2f(state == "established"))
	m.peerTransitions.WithLabelValues(peer, state).Inc()
}
