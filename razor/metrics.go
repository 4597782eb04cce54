package razor

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The query types and rcodes that get their own label value; the rest
// count as "other", so a flood of odd types cannot grow the series.
var (
	metricTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeMX,
		dns.TypeTXT, dns.TypeSRV, dns.TypeCAA, dns.TypePTR, dns.TypeDS, dns.TypeDNSKEY, dns.TypeHTTPS, dns.TypeANY}
	metricRcodes = []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
		dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers}
)

type metrics struct {
	reg *prometheus.Registry
	// queries[type index][rcode index], resolved once so the query path
	// only increments.
	queries      [][]prometheus.Counter
	proto        [2]prometheus.Counter // udp, tcp
	dropped      prometheus.Counter    // unparseable or not a query
	truncated    prometheus.Counter
	tcpRefused   [2]prometheus.Counter // per prefix, full
	tcpEvicted   prometheus.Counter
	poolAnswers  *prometheus.CounterVec
	failOpen     *prometheus.CounterVec
	rrl          [2]prometheus.Counter // drop, slip
	cookies      [4]prometheus.Counter // by cookieKind (none unused)
	poolHealthy  *prometheus.GaugeVec
	storeErrors  prometheus.Counter
	storeUpdates prometheus.Counter
	storeVersion prometheus.Gauge
	zoneReloads  *prometheus.CounterVec
}

func newMetrics(storeAge func() float64) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg}
	qv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_queries_total", Help: "Queries answered, by query type and response code.",
	}, []string{"qtype", "rcode"})
	for _, t := range append(metricTypes, 0) {
		tn := "other"
		if t != 0 {
			tn = dns.TypeToString[t]
		}
		row := make([]prometheus.Counter, 0, len(metricRcodes)+1)
		for _, rc := range append(metricRcodes, -1) {
			rn := "other"
			switch {
			case rc == dns.RcodeBadVers:
				rn = "BADVERS" // 16 is also TSIG's BADSIG; razor means BADVERS
			case rc >= 0:
				rn = dns.RcodeToString[rc]
			}
			row = append(row, qv.WithLabelValues(tn, rn))
		}
		m.queries = append(m.queries, row)
	}
	pv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_requests_total", Help: "Packets received, by transport: answered, dropped or rate limited.",
	}, []string{"proto"})
	m.proto = [2]prometheus.Counter{pv.WithLabelValues("udp"), pv.WithLabelValues("tcp")}
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "razor_dropped_total", Help: "Packets dropped without an answer: too short to be DNS, or a response.",
	})
	m.truncated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "razor_truncated_total", Help: "UDP answers sent with TC set because they did not fit.",
	})
	tv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_tcp_refused_total", Help: "TCP connections closed at accept: the client prefix's limit, or razor full with none idle.",
	}, []string{"reason"})
	m.tcpRefused = [2]prometheus.Counter{tv.WithLabelValues("prefix"), tv.WithLabelValues("full")}
	m.tcpEvicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "razor_tcp_evicted_total", Help: "Idle TCP connections closed to make room for a new one at tcp_max_conns.",
	})
	m.poolAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_pool_answers_total", Help: "Address records handed out, by pool.",
	}, []string{"pool"})
	m.failOpen = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_fail_open_total", Help: "Route answers given from all non-disabled pools because no pool was healthy.",
	}, []string{"route"})
	rv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_rrl_total", Help: "Responses limited by RRL: dropped, or slipped (sent truncated).",
	}, []string{"action"})
	m.rrl = [2]prometheus.Counter{rv.WithLabelValues("drop"), rv.WithLabelValues("slip")}
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_cookies_total", Help: "Queries with a DNS cookie, by what it held: client (client cookie only), valid, invalid.",
	}, []string{"kind"})
	m.cookies = [4]prometheus.Counter{nil, cv.WithLabelValues("client"), cv.WithLabelValues("valid"), cv.WithLabelValues("invalid")}
	m.poolHealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "razor_pool_healthy", Help: "1 when the pool is healthy (Consul catalog and razor's own probe), else 0.",
	}, []string{"pool"})
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "razor_store_errors_total", Help: "Failed reads of the store (the last good data is kept).",
	})
	m.storeUpdates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "razor_store_updates_total", Help: "Documents applied from the store.",
	})
	m.storeVersion = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "razor_store_version", Help: "Version of the store document in use.",
	})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "razor_store_age_seconds", Help: "Seconds since the data in use was last confirmed current by the store.",
	}, storeAge)
	m.zoneReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "razor_zone_reloads_total", Help: "Zone reloads, by result.",
	}, []string{"result"})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(qv, pv, m.dropped, m.truncated, tv, m.tcpEvicted, m.poolAnswers, m.failOpen, rv, cv, m.poolHealthy,
		m.storeErrors, m.storeUpdates, m.storeVersion, age, m.zoneReloads)
	return m
}

// query counts one answered query.
func (m *metrics) query(qtype uint16, rcode int) {
	ti := len(metricTypes)
	for i, t := range metricTypes {
		if t == qtype {
			ti = i
			break
		}
	}
	ri := len(metricRcodes)
	for i, r := range metricRcodes {
		if r == rcode {
			ri = i
			break
		}
	}
	m.queries[ti][ri].Inc()
}
