package controller

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	slotsChanged *prometheus.HistogramVec
	writeLatency prometheus.Histogram
	connected    prometheus.Gauge
	primary      prometheus.Gauge
	vips         prometheus.Gauge
	servers      *prometheus.GaugeVec
	updates      *prometheus.CounterVec
	writeErrors  prometheus.Counter
	reconciles   prometheus.Counter
	pipelineSets prometheus.Counter
	unresolved   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		slotsChanged: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "p4access_slots_changed",
			Help:    "Maglev slots written per VIP per update.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}, []string{"vip"}),
		writeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p4access_write_duration_seconds",
			Help:    "Latency of P4Runtime Write RPCs (one batch each).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 3, 12),
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p4access_device_connected",
			Help: "1 while the controller holds a stream to the device and has reconciled.",
		}),
		primary: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p4access_device_primary",
			Help: "1 while the device names this controller primary.",
		}),
		vips: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p4access_vips",
			Help: "Configured VIPs with at least one server.",
		}),
		servers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "p4access_vip_servers",
			Help: "NAT64 servers (resolved next hops) per VIP.",
		}, []string{"vip"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p4access_updates_total",
			Help: "P4Runtime updates written, by entity and type.",
		}, []string{"entity", "type"}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p4access_write_errors_total",
			Help: "Failed Write RPCs (each leads to a read-back and retry).",
		}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p4access_reconciles_total",
			Help: "Read-backs of the device state (every (re)connect and after errors).",
		}),
		pipelineSets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p4access_pipeline_sets_total",
			Help: "SetForwardingPipelineConfig calls (device ran no or another program).",
		}),
		unresolved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p4access_unresolved_next_hops",
			Help: "Announced next hops ignored: not in servers, or no MAC known yet.",
		}),
	}
	reg.MustRegister(m.slotsChanged, m.writeLatency, m.connected, m.primary, m.vips, m.servers,
		m.updates, m.writeErrors, m.reconciles, m.pipelineSets, m.unresolved)
	return m
}
