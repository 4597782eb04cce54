package edge

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/v6pod/v6pod/edge/route"
	"github.com/v6pod/v6pod/edge/source"
)

// metrics live on the edge's own registry.
type metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec // app, code
	upstreamTime prometheus.Histogram
	ejections    *prometheus.CounterVec // app
	retries      *prometheus.CounterVec // app
	upstreamErrs *prometheus.CounterVec // app, kind
	aborted      *prometheus.CounterVec // app, by
	activeConns  prometheus.Gauge
	listenerUp   *prometheus.GaugeVec // addr
	certLoads    *prometheus.CounterVec
	accessDrop   prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_requests_total", Help: "Requests answered, by app and HTTP status (app \"\" is an unknown host).",
		}, []string{"app", "code"}),
		upstreamTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "edge_upstream_duration_seconds", Help: "Time from sending a request to an upstream to its response headers.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_upstream_ejections_total", Help: "Upstreams ejected by passive health, by app.",
		}, []string{"app"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_retries_total", Help: "Idempotent requests retried on another upstream after a connect failure, by app.",
		}, []string{"app"}),
		upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_upstream_errors_total", Help: "Failed upstream attempts, by app and kind (connect, timeout: no response head in time or a stalled body, body: a response body cut, other).",
		}, []string{"app", "kind"}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_requests_aborted_total", Help: "Requests whose answer was cut after its head was sent, by app and by whom (upstream: its body broke or stalled; client: it went away or stopped reading).",
		}, []string{"app", "by"}),
		activeConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_active_connections", Help: "Client connections open now (hijacked ones, e.g. WebSocket, leave this count).",
		}),
		listenerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_listener_up", Help: "1 while a serving listener is bound, by address.",
		}, []string{"addr"}),
		certLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tls_certificate_loads_total", Help: "Certificate file loads, by result (ok, error).",
		}, []string{"result"}),
		accessDrop: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_access_log_sampled_out_total", Help: "Requests not written to the access log because of sampling.",
		}),
	}
	m.reg.MustRegister(m.requests, m.upstreamTime, m.ejections, m.retries, m.upstreamErrs, m.aborted, m.activeConns,
		m.listenerUp, m.certLoads, m.accessDrop,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerState adds the gauges read from the live state.
func (m *metrics) registerState(s *Server, src source.Source, t *route.Table) {
	st := src.Stats()
	lbl := prometheus.Labels{"source": src.String()}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_source_staleness_seconds", ConstLabels: lbl,
			Help: "How long the lists may have been stale: 0 while the source is up, else the time since they were last known current."},
			func() float64 { return st.Staleness(time.Now()).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_source_up", ConstLabels: lbl, Help: "1 while the source is connected and current."},
			func() float64 { return b2f(st.Up.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_source_errors_total", ConstLabels: lbl, Help: "Source failures (connection, load, bad keys)."},
			func() float64 { return float64(st.Errors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_source_bad_members_total", ConstLabels: lbl, Help: "Bad entries read and skipped (upstream members, host names), counted each time they are read."},
			func() float64 { return float64(st.BadMembers.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_source_refused_loads_total", ConstLabels: lbl, Help: "Full loads read but not applied (an empty answer while the lists had entries, a replica out of sync)."},
			func() float64 { return float64(st.Refused.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_source_stale", ConstLabels: lbl, Help: "1 while the source is connected but its last full load was refused."},
			func() float64 { return b2f(st.Stale.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_source_updates_total", ConstLabels: lbl, Help: "Host and app changes applied."},
			func() float64 { return float64(st.Updates.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_apps", Help: "Apps with upstreams."},
			func() float64 { return float64(t.Apps()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_hosts", Help: "Host names served."},
			func() float64 { return float64(t.Hosts()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_ready", Help: "1 when ready (lists loaded, a listener up, not draining)."},
			func() float64 { return b2f(s.Ready()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_draining", Help: "1 once draining has begun."},
			func() float64 { return b2f(s.Draining()) }),
	)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
