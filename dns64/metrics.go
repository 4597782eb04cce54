package dns64

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the server's own registry. Hot-path children
// are resolved once so that counting a query is one atomic add.
type metrics struct {
	queries      [2][4]prometheus.Counter // [tcp][qtype index]
	responses    map[int]prometheus.Counter
	respOther    prometheus.Counter
	synthesized  prometheus.Counter
	ptrCNAME     prometheus.Counter
	cacheHits    prometheus.Counter
	cacheMisses  prometheus.Counter
	cacheEvicted prometheus.Counter
	coalesced    prometheus.Counter
	dropped      prometheus.Counter
	upRequests   *prometheus.CounterVec
	upDuration   *prometheus.HistogramVec
	upHealthy    *prometheus.GaugeVec
	upScore      *prometheus.GaugeVec
}

var qtypeLabels = [4]string{"A", "AAAA", "PTR", "other"}

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypePTR:
		return 2
	}
	return 3
}

func newMetrics(reg prometheus.Registerer, c *cache) *metrics {
	m := &metrics{responses: map[int]prometheus.Counter{}}
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dns64_queries_total",
		Help: "Queries received, by transport and query type (A, AAAA, PTR, other).",
	}, []string{"transport", "qtype"})
	for tcp, tr := range []string{"udp", "tcp"} {
		for i, q := range qtypeLabels {
			m.queries[tcp][i] = queries.WithLabelValues(tr, q)
		}
	}
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dns64_responses_total",
		Help: "Responses sent, by rcode.",
	}, []string{"rcode"})
	for _, rc := range []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure,
		dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers} {
		m.responses[rc] = responses.WithLabelValues(dns.RcodeToString[rc])
	}
	m.respOther = responses.WithLabelValues("other")
	m.synthesized = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_synthesized_total",
		Help: "AAAA answers synthesized from A records (RFC 6147 section 5.1.7).",
	})
	m.ptrCNAME = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_ptr_synthesized_total",
		Help: "PTR queries inside a prefix answered with a CNAME to in-addr.arpa (RFC 6147 section 5.3.1).",
	})
	m.cacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_cache_hits_total", Help: "Answers served from the cache.",
	})
	m.cacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_cache_misses_total", Help: "Queries not found in the cache.",
	})
	m.cacheEvicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_cache_evictions_total", Help: "Cached answers evicted to stay within the limits.",
	})
	m.coalesced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_coalesced_total", Help: "Queries that waited for an identical query already being resolved.",
	})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dns64_dropped_total", Help: "UDP queries dropped because max_concurrent queries were already waiting.",
	})
	m.upRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dns64_upstream_requests_total",
		Help: "Queries sent to upstreams, by upstream and outcome (ok, servfail, refused, timeout, error, truncated).",
	}, []string{"upstream", "outcome"})
	m.upDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dns64_upstream_duration_seconds",
		Help:    "Upstream exchange latency, TCP retries included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"upstream"})
	m.upHealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dns64_upstream_healthy",
		Help: "1 when the upstream is used normally, 0 while it backs off after failures.",
	}, []string{"upstream"})
	m.upScore = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dns64_upstream_score",
		Help: "Moving average of the upstream's query outcomes (1 all succeed, 0 all fail).",
	}, []string{"upstream"})
	cs := []prometheus.Collector{queries, responses, m.synthesized, m.ptrCNAME, m.cacheHits,
		m.cacheMisses, m.cacheEvicted, m.coalesced, m.dropped, m.upRequests, m.upDuration, m.upHealthy, m.upScore}
	if c != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "dns64_cache_entries", Help: "Answers in the cache.",
			}, func() float64 { n, _ := c.size(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "dns64_cache_bytes", Help: "Bytes the cached answers account for.",
			}, func() float64 { _, b := c.size(); return float64(b) }),
		)
	}
	for _, col := range cs {
		reg.MustRegister(col)
	}
	return m
}

func (m *metrics) response(rcode int) {
	if c, ok := m.responses[rcode]; ok {
		c.Inc()
		return
	}
	m.respOther.Inc()
}
