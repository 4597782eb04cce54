package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/v6pod/v6pod/edge/balance"
	"github.com/v6pod/v6pod/edge/h1"
	"github.com/v6pod/v6pod/edge/proxyproto"
)

// reqState travels with a request through the reverse proxy.
type reqState struct {
	app      string
	pool     *balance.Pool
	policy   *App
	client   netip.AddrPort
	local    netip.AddrPort
	tls      bool
	status   int
	upstream *balance.Upstream
	retries  int
	body     *clientBody              // the client's request body, when it has one
	ctl      *http.ResponseController // when client timeouts set deadlines
	// upstreamBroke is set when the upstream's response body failed
	// (stalled, cut): an abort is then the upstream's doing.
	upstreamBroke atomic.Bool
}

// clientBody wraps the client's request body and keeps its first read
// error: a body the client breaks (malformed chunking, an abort) fails
// the upstream round trip, and that must not count against the upstream.
type clientBody struct {
	rc   io.ReadCloser
	ctl  *http.ResponseController // per-read deadlines (client.read_timeout)
	idle time.Duration
	mu   sync.Mutex
	err  error
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.idle > 0 {
		b.ctl.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.rc.Read(p)
	if b.idle > 0 && err != nil {
		// The body is done: net/http's background read on the
		// connection must not inherit the deadline.
		b.ctl.SetReadDeadline(time.Time{})
	}
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

func (b *clientBody) readErr() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// clientBodyError is a round trip that failed because the client's body
// did: answered 400 (malformed) or recorded 499 (the client went away).
type clientBodyError struct {
	err   error
	abort bool
}

func (e *clientBodyError) Error() string { return "client request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func newClientBodyError(r *http.Request, err error) *clientBodyError {
	var ne net.Error
	abort := r.Context().Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
	return &clientBodyError{err: err, abort: abort}
}

type ctxKey struct{}

// connectError marks a failure to connect to an upstream: nothing of the
// request was sent, so it is safe to try another upstream.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

var errNoUpstream = errors.New("no upstream available")

func isIdempotent(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false // a body that cannot be replayed
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// transport picks the upstream for each attempt and retries idempotent
// requests whose connection failed, each on another upstream.
type transport struct {
	s      *Server
	pooled *http.Transport // keep-alive connections
	pp     *http.Transport // PROXY v2: one connection per request
	fast   *h1.Transport   // requests without a body (see package h1)
}

func (s *Server) newTransport() *transport {
	t := &transport{s: s}
	mk := func(pp bool) *http.Transport {
		d := &net.Dialer{Timeout: s.cfg.Upstream.ConnectTimeout, KeepAlive: 30 * time.Second}
		return &http.Transport{
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, address)
				if err != nil {
					return nil, &connectError{err}
				}
				if wt := on(s.cfg.Upstream.WriteTimeout); wt > 0 {
					c = &writeDeadlineConn{Conn: c, d: wt}
				}
				if pp {
					st, _ := ctx.Value(ctxKey{}).(*reqState)
					if st == nil {
						c.Close()
						return nil, errors.New("proxy protocol: no client address")
					}
					hdr, err := proxyproto.Append(make([]byte, 0, 52), st.client, st.local)
					if err == nil {
						_, err = c.Write(hdr)
					}
					if err != nil {
						c.Close()
						return nil, err
					}
				}
				return c, nil
			},
			MaxIdleConns:           0,
			MaxIdleConnsPerHost:    s.cfg.Upstream.IdleConns,
			IdleConnTimeout:        s.cfg.Upstream.IdleTimeout,
			ResponseHeaderTimeout:  on(s.cfg.Upstream.ResponseTimeout),
			MaxResponseHeaderBytes: s.cfg.Upstream.MaxHeaderBytes,
			DisableCompression:     true,
			DisableKeepAlives:      pp,
			ForceAttemptHTTP2:      false,
			ExpectContinueTimeout:  time.Second,
		}
	}
	t.pooled, t.pp = mk(false), mk(true)
	if !s.cfg.Upstream.StdlibOnly {
		d := &net.Dialer{Timeout: s.cfg.Upstream.ConnectTimeout, KeepAlive: 30 * time.Second}
		t.fast = &h1.Transport{
			Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return nil, &connectError{err}
				}
				return c, nil
			},
			MaxIdlePerHost:         s.cfg.Upstream.IdleConns,
			IdleTimeout:            s.cfg.Upstream.IdleTimeout,
			ResponseHeaderTimeout:  on(s.cfg.Upstream.ResponseTimeout),
			BodyReadTimeout:        on(s.cfg.Upstream.ReadTimeout),
			WriteTimeout:           on(s.cfg.Upstream.WriteTimeout),
			MaxResponseHeaderBytes: s.cfg.Upstream.MaxHeaderBytes,
		}
	}
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(ctxKey{}).(*reqState)
	var base http.RoundTripper = t.pooled
	if st.policy.ProxyProtocol {
		base = t.pp
	} else if t.fast != nil && h1.CanHandle(req) {
		base = t.fast
	}
	// The body idle timeout of net/http.Transport's responses cancels the
	// round trip's context (edge/h1 sets read deadlines itself).
	var cancel context.CancelFunc
	idle := on(t.s.cfg.Upstream.ReadTimeout)
	if base != t.fast {
		req = limitInterim(req)
		if idle > 0 {
			var ctx context.Context
			ctx, cancel = context.WithCancel(req.Context())
			req = req.WithContext(ctx)
		}
	}
	resp, err := t.roundTrip(req, st, base)
	if cancel != nil {
		switch {
		case err != nil:
			cancel()
		case resp.StatusCode == http.StatusSwitchingProtocols:
			// A tunnel: no idle timeout, and it lives until the request ends.
		default:
			if b, ok := resp.Body.(*body); ok {
				b.idle, b.cancel = idle, cancel
			}
		}
	}
	return resp, err
}

func (t *transport) roundTrip(req *http.Request, st *reqState, base http.RoundTripper) (*http.Response, error) {
	m := t.s.metrics
	var tried []*balance.Upstream
	var lastErr error
	idem := isIdempotent(req)
	for attempt := 0; ; attempt++ {
		up := st.pool.Pick(st.client.Addr(), tried)
		if up == nil {
			if lastErr != nil {
				// Every upstream was tried: the last failure says why
				// (502, or 504 for a timeout), not "none available".
				return nil, lastErr
			}
			return nil, errNoUpstream
		}
		st.upstream = up
		req.URL.Host = up.HostPort
		if attempt > 0 && req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req.Body = b
		}
		up.Acquire()
		start := time.Now()
		resp, err := base.RoundTrip(req)
		if err != nil {
			up.Release()
			if berr := st.body.readErr(); berr != nil {
				// The client's body broke, not the upstream.
				return nil, newClientBodyError(req, berr)
			}
			var ce *connectError
			if errors.As(err, &ce) {
				m.upstreamErrs.WithLabelValues(st.app, "connect").Inc()
				t.s.failure(st, up)
				if idem && attempt < st.policy.retries() && req.Context().Err() == nil {
					lastErr = err
					tried = append(tried, up)
					st.retries++
					m.retries.WithLabelValues(st.app).Inc()
					continue
				}
				return nil, err
			}
			if req.Context().Err() == nil {
				kind := "other"
				if isTimeoutErr(err) {
					kind = "timeout" // response_timeout: a hung upstream
				}
				m.upstreamErrs.WithLabelValues(st.app, kind).Inc()
				t.s.failure(st, up)
				// The connection broke before any byte of an answer (not
				// a timeout: the upstream may be working on it): an
				// idempotent request may go to another upstream.
				if idem && h1.NoResponse(err) && attempt < st.policy.retries() {
					lastErr = err
					tried = append(tried, up)
					st.retries++
					m.retries.WithLabelValues(st.app).Inc()
					continue
				}
			}
			return nil, err
		}
		m.upstreamTime.Observe(time.Since(start).Seconds())
		if resp.StatusCode >= 500 {
			t.s.failure(st, up)
		} else {
			st.pool.Success(up)
		}
		resp.Body = t.s.wrapBody(req.Context(), resp.Body, st, up)
		return resp, nil
	}
}

// maxInterim is the number of 1xx responses forwarded before the final
// one; more are an upstream error (502), as in net/http and edge/h1.
const maxInterim = 5

var errTooManyInterim = errors.New("too many 1xx responses from upstream")

// limitInterim bounds the 1xx responses that net/http.Transport hands to
// the reverse proxy's trace hook: net/http resets its header size limit
// for every 1xx delivered to a hook, so an upstream answering 103 forever
// would stream endlessly through the edge. The hook is replaced (hooks
// composed by httptrace cannot fail) by one that forwards maxInterim and
// then fails the round trip.
func limitInterim(req *http.Request) *http.Request {
	old := httptrace.ContextClientTrace(req.Context())
	if old == nil || old.Got1xxResponse == nil {
		return req
	}
	nt := *old
	fwd := old.Got1xxResponse
	n := 0
	nt.Got1xxResponse = func(code int, h textproto.MIMEHeader) error {
		if n++; n > maxInterim {
			return errTooManyInterim
		}
		return fwd(code, h)
	}
	return req.WithContext(httptrace.WithClientTrace(noTraceCtx{req.Context()}, &nt))
}

// noTraceCtx hides the client trace of its parent, so that WithClientTrace
// on top of it installs a trace without composing the old one.
type noTraceCtx struct{ context.Context }

func (c noTraceCtx) Value(k any) any {
	v := c.Context.Value(k)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}

func (s *Server) failure(st *reqState, up *balance.Upstream) {
	if d := st.pool.Failure(up); d > 0 {
		s.metrics.ejections.WithLabelValues(st.app).Inc()
		s.log.Warn("edge: upstream ejected", "app", st.app, "upstream", up.HostPort, "for", d)
	}
}

// wrapBody releases the upstream's in-flight slot when the body is closed,
// and counts a body that stalls (upstream.read_timeout) against the
// upstream. Upgraded connections (101) keep their io.ReadWriteCloser body,
// which the reverse proxy needs for the tunnel.
func (s *Server) wrapBody(ctx context.Context, b io.ReadCloser, st *reqState, up *balance.Upstream) io.ReadCloser {
	if rwc, ok := b.(io.ReadWriteCloser); ok {
		return &rwcBody{ReadWriteCloser: rwc, up: up}
	}
	return &body{ReadCloser: b, up: up, s: s, st: st, ctx: ctx}
}

type body struct {
	io.ReadCloser
	up   *balance.Upstream
	s    *Server
	st   *reqState
	ctx  context.Context // the round trip's
	done atomic.Bool

	// net/http.Transport responses: an idle timer cancels the round trip
	// when one read waits longer than idle.
	idle     time.Duration
	cancel   context.CancelFunc
	timer    *time.Timer
	timedOut atomic.Bool
	broke    bool // a body error was counted
}

func (b *body) Read(p []byte) (int, error) {
	if b.cancel != nil {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.idle, b.stalled)
		} else {
			b.timer.Reset(b.idle)
		}
	}
	n, err := b.ReadCloser.Read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	if err != nil && err != io.EOF {
		if b.timedOut.Load() {
			return n, errUpstreamBodyTimeout
		}
		if b.ctx.Err() == nil {
			b.st.upstreamBroke.Store(true)
			if isTimeoutErr(err) {
				if b.timedOut.CompareAndSwap(false, true) {
					b.stalledHealth() // edge/h1's read deadline
				}
			} else if !b.broke {
				// The upstream died in the middle of the body.
				b.broke = true
				b.s.metrics.upstreamErrs.WithLabelValues(b.st.app, "body").Inc()
				b.s.failure(b.st, b.up)
			}
		}
	}
	return n, err
}

var errUpstreamBodyTimeout = errors.New("upstream response body: read timeout")

func (b *body) stalled() {
	if b.timedOut.CompareAndSwap(false, true) {
		b.st.upstreamBroke.Store(true)
		b.stalledHealth()
		b.cancel()
	}
}

// stalledHealth counts a stalled response body as an upstream failure.
func (b *body) stalledHealth() {
	b.s.metrics.upstreamErrs.WithLabelValues(b.st.app, "timeout").Inc()
	b.s.failure(b.st, b.up)
}

func (b *body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.up.Release()
	}
	err := b.ReadCloser.Close()
	if b.cancel != nil {
		if b.timer != nil {
			b.timer.Stop()
		}
		b.cancel()
	}
	return err
}

// writeDeadlineConn bounds every write to an upstream
// (upstream.write_timeout): an upstream that stops reading a request body
// fails the request instead of holding it forever.
type writeDeadlineConn struct {
	net.Conn
	d time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.d))
	return c.Conn.Write(p)
}

// deadlineWriter bounds every write to the client (client.write_timeout).
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type rwcBody struct {
	io.ReadWriteCloser
	up   *balance.Upstream
	done atomic.Bool
}

func (b *rwcBody) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.up.Release()
	}
	return b.ReadWriteCloser.Close()
}

// bufPool recycles the reverse proxy's copy buffers (fixed-size arrays,
// so that Put does not allocate).
type bufPool struct{ p sync.Pool }

const copyBufSize = 32 << 10

func (b *bufPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return v.(*[copyBufSize]byte)[:]
	}
	return new([copyBufSize]byte)[:]
}

func (b *bufPool) Put(buf []byte) {
	if len(buf) == copyBufSize {
		b.p.Put((*[copyBufSize]byte)(buf))
	}
}

func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "upstream.invalid" // set per attempt by the transport
			pr.Out.Host = pr.In.Host
			keepTarget(pr.Out, pr.In)
			pr.SetXForwarded()
			// ReverseProxy strips the client's X-Forwarded-For/-Host/
			// -Proto and Forwarded; these two are just as untrusted.
			pr.Out.Header.Del("X-Real-Ip")
			pr.Out.Header.Del("X-Forwarded-Port")
			st := pr.In.Context().Value(ctxKey{}).(*reqState)
			pr.Out.Header["Forwarded"] = []string{forwarded(st, pr.In.Host)}
		},
		Transport: s.transport,
		// Answers with a length are flushed at most 50 ms after a write
		// (a body that trickles reaches the client as it comes); those
		// without a length, and SSE, at once.
		FlushInterval: 50 * time.Millisecond,
		BufferPool:    &s.bufs,
		ErrorLog:      slogErrorLog(s.log),
		ModifyResponse: func(r *http.Response) error {
			if st, ok := r.Request.Context().Value(ctxKey{}).(*reqState); ok {
				st.status = r.StatusCode
				if r.StatusCode == http.StatusSwitchingProtocols && st.ctl != nil {
					// A tunnel (WebSocket): idle is normal, no deadlines.
					st.ctl.SetReadDeadline(time.Time{})
					st.ctl.SetWriteDeadline(time.Time{})
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := r.Context().Value(ctxKey{}).(*reqState)
			code := http.StatusBadGateway
			var cbe *clientBodyError
			switch {
			case errors.As(err, &cbe) && cbe.abort:
				code = 499
			case errors.As(err, &cbe):
				code = http.StatusBadRequest
			case errors.Is(err, errNoUpstream):
				code = http.StatusServiceUnavailable
			case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
				code = 499 // client went away; nothing is written
			case isTimeoutErr(err):
				code = http.StatusGatewayTimeout
			}
			st.status = code
			if code != 499 {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(code)
				io.WriteString(w, http.StatusText(code)+"\n")
			}
		},
	}
}

// keepTarget makes the upstream see the client's request-target byte for
// byte: ReverseProxy drops query parameters it cannot parse (";", a lone
// "%") and re-encodes (and so reorders) the rest, and URL.RequestURI
// re-escapes a path it would have written differently. The query is taken
// raw, and the path of an origin-form target ("/...") goes out verbatim as
// URL.Opaque. A target starting with "//" cannot be carried in Opaque
// (it would read as a scheme-relative URL) and keeps Go's escaping.
func keepTarget(out, in *http.Request) {
	out.URL.RawQuery = in.URL.RawQuery
	out.URL.ForceQuery = in.URL.ForceQuery
	ru := in.RequestURI
	if len(ru) < 1 || ru[0] != '/' || strings.HasPrefix(ru, "//") {
		return
	}
	if i := strings.IndexByte(ru, '?'); i >= 0 {
		ru = ru[:i]
	}
	out.URL.Opaque = ru
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// forwarded builds the RFC 7239 Forwarded value for this hop.
func forwarded(st *reqState, host string) string {
	var b strings.Builder
	b.Grow(96)
	b.WriteString(`for="`)
	a := st.client.Addr().Unmap()
	if a.Is6() {
		b.WriteByte('[')
		b.WriteString(a.String())
		b.WriteByte(']')
	} else {
		b.WriteString(a.String())
	}
	b.WriteString(`";proto=`)
	if st.tls {
		b.WriteString("https")
	} else {
		b.WriteString("http")
	}
	if host != "" && !strings.ContainsAny(host, "\";\\ ") {
		b.WriteString(`;host="`)
		b.WriteString(host)
		b.WriteByte('"')
	}
	return b.String()
}

// ServeHTTP routes one request: Host → app → upstream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// client.write_timeout: a deadline for this answer (one left by an
	// earlier answer on the connection may have passed), renewed by each
	// write of a proxied body.
	var ctl *http.ResponseController
	wt := on(s.cfg.Client.WriteTimeout)
	if wt > 0 {
		ctl = http.NewResponseController(w)
		ctl.SetWriteDeadline(start.Add(wt))
	}
	if r.Method == http.MethodConnect {
		// The edge is a reverse proxy, not a forward one (and extended
		// CONNECT of RFC 8441 is not offered).
		http.Error(w, "CONNECT is not served here", http.StatusMethodNotAllowed)
		s.done(r, "", http.StatusMethodNotAllowed, nil, start, 0, "")
		return
	}
	app, pool, ok := s.table.Lookup(r.Host)
	if !ok {
		s.unknownHost(w, r)
		s.done(r, "", s.cfg.UnknownHost.Status, nil, start, 0, "")
		return
	}
	if pool == nil || pool.Len() == 0 {
		http.Error(w, "no upstream for this app", http.StatusServiceUnavailable)
		s.done(r, app, http.StatusServiceUnavailable, nil, start, 0, "")
		return
	}
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	st := &reqState{app: app, pool: pool, client: client, tls: r.TLS != nil}
	pol := s.policyFor(app)
	st.policy = pol
	if wt > 0 {
		w = &deadlineWriter{ResponseWriter: w, rc: ctl, d: wt}
	}
	st.ctl = ctl
	if r.Body != nil && r.Body != http.NoBody {
		st.body = &clientBody{rc: r.Body}
		if d := on(s.cfg.Client.ReadTimeout); d > 0 {
			if ctl == nil {
				ctl = http.NewResponseController(w)
			}
			st.body.ctl, st.body.idle = ctl, d
			st.ctl = ctl
		}
		r.Body = st.body
	}
	if pol.ProxyProtocol {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			st.local, _ = netip.ParseAddrPort(la.String())
		}
	}
	// ReverseProxy panics with http.ErrAbortHandler when a body breaks
	// after the head was sent (the upstream died or stalled mid-body, the
	// client went away): count and log the request, then let net/http
	// abort the connection.
	defer func() {
		if p := recover(); p != nil {
			by := "client"
			if st.upstreamBroke.Load() {
				by = "upstream"
			}
			code := st.status
			if code == 0 {
				code = http.StatusBadGateway
			}
			s.metrics.aborted.WithLabelValues(app, by).Inc()
			s.done(r, app, code, st.upstream, start, st.retries, by)
			panic(p)
		}
	}()
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
	s.done(r, app, st.status, st.upstream, start, st.retries, "")
}

func (s *Server) policyFor(app string) *App {
	if a, ok := s.policies[app]; ok {
		return a
	}
	return &s.cfg.Defaults
}

func (s *Server) unknownHost(w http.ResponseWriter, r *http.Request) {
	if s.unknownPage != nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(s.cfg.UnknownHost.Status)
		w.Write(s.unknownPage)
		return
	}
	http.Error(w, "no app serves this host", s.cfg.UnknownHost.Status)
}

// codes caches the label strings of the common status codes.
var codes = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return
}()

func codeString(code int) string {
	if code >= 0 && code < len(codes) {
		return codes[code]
	}
	return strconv.Itoa(code)
}

// done counts and logs a finished request.
func (s *Server) done(r *http.Request, app string, code int, up *balance.Upstream, start time.Time, retries int, aborted string) {
	s.metrics.requests.WithLabelValues(app, codeString(code)).Inc()
	if !s.cfg.AccessLog.Enabled {
		return
	}
	sampled, ok := s.sampler.take(time.Now())
	if !ok {
		s.metrics.accessDrop.Inc()
		return
	}
	attrs := []slog.Attr{
		slog.String("client", r.RemoteAddr),
		slog.String("host", r.Host),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", code),
		slog.String("app", app),
		slog.Duration("duration", time.Since(start)),
	}
	if up != nil {
		attrs = append(attrs, slog.String("upstream", up.HostPort))
	}
	if retries > 0 {
		attrs = append(attrs, slog.Int("retries", retries))
	}
	if aborted != "" {
		attrs = append(attrs, slog.String("aborted", aborted))
	}
	if sampled > 1 {
		attrs = append(attrs, slog.Int("sampled", sampled))
	}
	s.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "access", attrs...)
}

// sampler logs every request up to rate per second, then one in sample.
type sampler struct {
	rate, sample int64
	sec          atomic.Int64
	n            atomic.Int64
}

func (sm *sampler) take(now time.Time) (every int, ok bool) {
	sec := now.Unix()
	if old := sm.sec.Load(); old != sec && sm.sec.CompareAndSwap(old, sec) {
		sm.n.Store(0)
	}
	n := sm.n.Add(1)
	if n <= sm.rate {
		return 1, true
	}
	if (n-sm.rate)%sm.sample == 0 {
		return int(sm.sample), true
	}
	return 0, false
}
