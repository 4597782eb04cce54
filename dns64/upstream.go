package dns64

import (
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Exchanger sends one query upstream and returns the answer. The upstream
// pool implements it; tests and fuzzers may inject another.
type Exchanger interface {
	Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

var errMismatch = errors.New("dns64: upstream answered another question")

func sameQuestion(a, b dns.Question) bool {
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// errNoAnswer is returned when every attempt failed without an answer.
var errNoAnswer = errors.New("dns64: no upstream answered")

// upstream is one resolver and its health, judged only by the outcome of
// the queries clients cause. Timeouts and network errors count as
// failures: consecutive ones past the threshold put it in backoff, which
// doubles with each further failure; one success clears it. A SERVFAIL or
// REFUSED answer says little about the upstream (one broken domain gets
// SERVFAIL from every resolver): it counts against the upstream only when
// another upstream then answered the same question, and only when such
// answers are widespread: more than half of the last rcodeWindow answers,
// with at least rcodeMinSamples answers seen.
type upstream struct {
	addr string

	mu       sync.Mutex
	fails    int       // consecutive failures (timeouts, network errors)
	until    time.Time // avoided until then
	score    float64   // EWMA of outcomes, 1 = all good
	backoffs int
	recent   uint64 // the last answers, one bit each, 1 = SERVFAIL/REFUSED
	nRecent  int    // answers in recent, at most rcodeWindow

	requests map[string]prometheus.Counter
	duration prometheus.Observer
	healthy  prometheus.Gauge
	scoreG   prometheus.Gauge
}

// pool chooses upstreams in configured order, skipping those that back
// off, and retries failed queries on the next one.
type pool struct {
	ups        []*upstream
	udp, tcp   *dns.Client
	timeout    time.Duration
	attempts   int
	threshold  int
	backoff    time.Duration
	backoffMax time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// The window of answers in which SERVFAIL and REFUSED are judged.
const (
	rcodeWindow     = 32
	rcodeMinSamples = 10
)

var outcomes = []string{"ok", "servfail", "refused", "timeout", "error", "truncated"}

func newPool(addrs []string, c *Config, m *metrics, now func() time.Time, log *slog.Logger) *pool {
	p := &pool{
		udp:        &dns.Client{Net: "udp", UDPSize: uint16(c.UDPSize), Timeout: c.UpstreamTimeout},
		tcp:        &dns.Client{Net: "tcp", Timeout: c.UpstreamTimeout},
		timeout:    c.UpstreamTimeout,
		attempts:   c.UpstreamRetries + 1,
		threshold:  c.FailThreshold,
		backoff:    c.UpstreamBackoff,
		backoffMax: c.UpstreamBackoffMax,
		now:        now,
		log:        log,
	}
	for _, a := range addrs {
		u := &upstream{addr: a, score: 1, requests: map[string]prometheus.Counter{}}
		for _, o := range outcomes {
			u.requests[o] = m.upRequests.WithLabelValues(a, o)
		}
		u.duration = m.upDuration.WithLabelValues(a)
		u.healthy = m.upHealthy.WithLabelValues(a)
		u.scoreG = m.upScore.WithLabelValues(a)
		u.healthy.Set(1)
		u.scoreG.Set(1)
		p.ups = append(p.ups, u)
	}
	return p
}

// pick returns the first upstream not yet tried for this query that is not
// backing off; when all untried ones back off, the one whose backoff ends
// first; when all were tried, it starts over.
func (p *pool) pick(tried uint64, now time.Time) (int, *upstream) {
	if tried == 1<<len(p.ups)-1 {
		tried = 0
	}
	best := -1
	var bestUntil time.Time
	for i, u := range p.ups {
		if tried&(1<<i) != 0 {
			continue
		}
		u.mu.Lock()
		until := u.until
		u.mu.Unlock()
		if !now.Before(until) {
			return i, u
		}
		if best < 0 || until.Before(bestUntil) {
			best, bestUntil = i, until
		}
	}
	return best, p.ups[best]
}

// Exchange sends q to the upstreams until one answers with something other
// than SERVFAIL or REFUSED, at most attempts times. When all fail but some
// answered, the last answer is returned so its rcode reaches the client.
func (p *pool) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	var tried, answered uint64
	var rcoded []*upstream // answered SERVFAIL or REFUSED
	var last *dns.Msg
	lastErr := errNoAnswer
	for range p.attempts {
		if ctx.Err() != nil {
			break
		}
		i, u := p.pick(tried, p.now())
		tried |= 1 << i
		resp, outcome, err := p.exchangeOne(ctx, u, q)
		u.requests[outcome].Inc()
		if outcome == "ok" {
			u.result(resultOK, p)
			for _, r := range rcoded {
				if r != u {
					r.result(resultBlamed, p) // u answered what r would not
				}
			}
			return resp, nil
		}
		if ctx.Err() != nil && outcome == "timeout" {
			// Our own deadline, not the upstream's fault.
			break
		}
		p.log.Debug("upstream failed", "upstream", u.addr, "outcome", outcome, "qname", q.Question[0].Name, "err", err)
		if resp != nil {
			rcoded = append(rcoded, u)
			last = resp
			answered |= 1 << i
			if answered == 1<<len(p.ups)-1 {
				// Every upstream answered SERVFAIL or REFUSED: asking
				// again would only repeat that.
				break
			}
		} else {
			u.result(resultFailed, p)
		}
		if err != nil {
			lastErr = err
		}
	}
	// No upstream did better: the SERVFAIL or REFUSED was the name's
	// (a broken domain), not the upstreams' fault.
	for _, r := range rcoded {
		r.result(resultNeutral, p)
	}
	if last != nil {
		return last, nil
	}
	return nil, lastErr
}

// exchangeOne asks one upstream over UDP, then TCP when the answer is
// truncated.
func (p *pool) exchangeOne(ctx context.Context, u *upstream, q *dns.Msg) (*dns.Msg, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	q.Id = dns.Id()
	start := time.Now()
	resp, _, err := p.udp.ExchangeContext(ctx, q, u.addr)
	if err == nil && resp.Truncated {
		u.requests["truncated"].Inc()
		q.Id = dns.Id()
		resp, _, err = p.tcp.ExchangeContext(ctx, q, u.addr)
	}
	u.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, "timeout", err
		}
		return nil, "error", err
	}
	if len(resp.Question) != 1 || !sameQuestion(resp.Question[0], q.Question[0]) {
		return nil, "error", errMismatch
	}
	switch resp.Rcode {
	case dns.RcodeServerFailure:
		return resp, "servfail", nil
	case dns.RcodeRefused:
		return resp, "refused", nil
	}
	return resp, "ok", nil
}

type result int

const (
	resultOK      result = iota // an answer with a usable rcode
	resultNeutral               // SERVFAIL or REFUSED, and no upstream did better
	resultBlamed                // SERVFAIL or REFUSED, another upstream answered
	resultFailed                // timeout or network error
)

// result records one outcome.
func (u *upstream) result(r result, p *pool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	const alpha = 0.2
	if r == resultOK || r == resultNeutral {
		u.score += alpha * (1 - u.score)
	} else {
		u.score -= alpha * u.score
	}
	u.scoreG.Set(u.score)
	failed := r == resultFailed
	if r != resultFailed {
		u.fails = 0 // it answers
		u.recent <<= 1
		if r == resultBlamed {
			u.recent |= 1
		}
		u.nRecent = min(u.nRecent+1, rcodeWindow)
		u.recent &= 1<<rcodeWindow - 1
		bad := bits.OnesCount64(u.recent)
		failed = r == resultBlamed && u.nRecent >= rcodeMinSamples && 2*bad > u.nRecent
	}
	switch {
	case r == resultOK && u.backoffs > 0:
		p.log.Info("upstream recovered", "upstream", u.addr)
		u.backoffs, u.until = 0, time.Time{}
		u.recent, u.nRecent = 0, 0
		u.healthy.Set(1)
	case failed:
		if r == resultFailed {
			u.fails++
			if u.fails < p.threshold {
				return
			}
		}
		d := p.backoff << min(u.backoffs, 20)
		if d > p.backoffMax || d <= 0 {
			d = p.backoffMax
		}
		u.backoffs++
		u.until = p.now().Add(d)
		u.healthy.Set(0)
		if u.backoffs == 1 {
			p.log.Warn("upstream backing off", "upstream", u.addr, "failures", u.fails,
				"servfail_refused", bits.OnesCount64(u.recent), "of", u.nRecent, "backoff", d)
		}
	}
}
