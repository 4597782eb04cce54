// Package h1 is a small HTTP/1.1 client transport for proxying requests
// without a body: the request is written and the response read by the
// calling goroutine over a keep-alive connection of a per-address pool, with
// none of net/http.Transport's per-connection reader and writer goroutines
// and their hand-offs. Everything else (bodies, upgrades) belongs to
// net/http.Transport; CanHandle says which is which.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Transport is an http.RoundTripper for requests CanHandle accepts.
type Transport struct {
	// Dial opens a connection to addr (host:port).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept per address.
	MaxIdlePerHost int
	// IdleTimeout closes connections idle for longer.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head (0: none).
	ResponseHeaderTimeout time.Duration
	// BodyReadTimeout bounds the wait for each read of a response body
	// (idle, not total; 0: none).
	BodyReadTimeout time.Duration
	// WriteTimeout bounds writing a request head (0: none).
	WriteTimeout time.Duration
	// MaxResponseHeaderBytes bounds the bytes of the response head,
	// interim (1xx) responses included (0: DefaultMaxResponseHeaderBytes).
	MaxResponseHeaderBytes int64

	pools sync.Map // addr → *pool
}

// CanHandle reports whether RoundTrip can carry req: HTTP/1.x semantics,
// no request body, no protocol upgrade.
func CanHandle(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength > 0 {
		return false
	}
	if _, ok := req.Header["Upgrade"]; ok {
		return false
	}
	return req.URL.Scheme == "http"
}

// DefaultMaxResponseHeaderBytes is the response-head limit when
// MaxResponseHeaderBytes is 0 (the edge's own request-head limit).
const DefaultMaxResponseHeaderBytes = 64 << 10

// maxInterim is the number of 1xx responses accepted before the final one
// (net/http allows 5 as well).
const maxInterim = 5

// ErrResponseHeaderTooLarge is returned when an upstream's response head
// exceeds MaxResponseHeaderBytes.
var ErrResponseHeaderTooLarge = errors.New("h1: upstream response header too large")

// ErrTooManyInterim is returned after more than 5 interim (1xx) responses.
var ErrTooManyInterim = errors.New("h1: too many 1xx responses from upstream")

type pool struct {
	mu   sync.Mutex
	idle []*conn
	dead bool // swept away: connections handed back are closed
}

type conn struct {
	nc       net.Conn
	lr       *limitReader // under br: bounds the response head
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
}

func (t *Transport) pool(addr string) *pool {
	if p, ok := t.pools.Load(addr); ok {
		return p.(*pool)
	}
	p, _ := t.pools.LoadOrStore(addr, &pool{})
	return p.(*pool)
}

func (t *Transport) get(p *pool) *conn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if t.IdleTimeout > 0 && now.Sub(c.idleFrom) > t.IdleTimeout {
			c.nc.Close()
			continue
		}
		return c
	}
	return nil
}

func (t *Transport) put(p *pool, c *conn) {
	c.idleFrom = time.Now()
	p.mu.Lock()
	if !p.dead && len(p.idle) < max(t.MaxIdlePerHost, 1) {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// CloseIdleConnections closes every idle connection.
func (t *Transport) CloseIdleConnections() {
	t.pools.Range(func(_, v any) bool {
		p := v.(*pool)
		p.mu.Lock()
		for _, c := range p.idle {
			c.nc.Close()
		}
		p.idle = nil
		p.mu.Unlock()
		return true
	})
}

// Sweep closes connections idle for longer than IdleTimeout and forgets
// addresses with no idle connection left, so that upstreams that come and
// go leave nothing behind. Call it now and then (the edge: every 30 s).
func (t *Transport) Sweep() {
	now := time.Now()
	t.pools.Range(func(k, v any) bool {
		p := v.(*pool)
		p.mu.Lock()
		keep := p.idle[:0]
		for _, c := range p.idle {
			if t.IdleTimeout > 0 && now.Sub(c.idleFrom) > t.IdleTimeout {
				c.nc.Close()
				continue
			}
			keep = append(keep, c)
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		if len(p.idle) == 0 {
			p.dead = true
			t.pools.Delete(k)
		}
		p.mu.Unlock()
		return true
	})
}

// errStale marks a connection that broke (EOF, reset, broken pipe)
// before any byte of the answer arrived: on a reused connection, the
// upstream had closed it. A timeout is never stale: the upstream may be
// working on the request.
type errStale struct{ err error }

// broken reports whether err is a connection closed or reset by the peer
// (not a timeout).
func broken(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// Idempotent reports whether req may be sent again after a connection
// broke without an answer (RFC 9110, 9.2.2): GET, HEAD, OPTIONS, TRACE,
// PUT and DELETE (this transport carries no bodies), or any request with
// an Idempotency-Key (or X-Idempotency-Key) header, as net/http does.
func Idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

func (e *errStale) Error() string { return "h1: reused connection failed: " + e.err.Error() }
func (e *errStale) Unwrap() error { return e.err }

// NoResponse reports whether err is a failure after which nothing of an
// answer arrived because the connection broke (closed or reset, not timed
// out) before the first byte. An idempotent request may then be retried
// elsewhere (RFC 9110, 9.2.2).
func NoResponse(err error) bool {
	var st *errStale
	return errors.As(err, &st)
}

var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip implements http.RoundTripper for requests CanHandle accepts.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !CanHandle(req) {
		return nil, errors.New("h1: request not supported (body or upgrade)")
	}
	addr := req.URL.Host
	p := t.pool(addr)
	idem := Idempotent(req)
	for attempt := 0; ; attempt++ {
		c := t.get(p)
		for c != nil && !idem && c.closedByPeer() {
			// A request that must not be sent twice goes only on a
			// pooled connection still open (one non-blocking read).
			c.nc.Close()
			c = t.get(p)
		}
		reused := c != nil
		if c == nil {
			nc, err := t.Dial(req.Context(), addr)
			if err != nil {
				return nil, err
			}
			c = newConn(nc)
		}
		resp, err := t.roundTrip(p, c, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A pooled connection the upstream had closed: send the request
		// again on another one, if it may be repeated.
		var st *errStale
		if reused && errors.As(err, &st) && attempt < 3 && req.Context().Err() == nil && idem {
			continue
		}
		return nil, err
	}
}

func (t *Transport) roundTrip(p *pool, c *conn, req *http.Request) (*http.Response, error) {
	var fired atomic.Bool
	stop := context.AfterFunc(req.Context(), func() {
		fired.Store(true)
		c.nc.SetDeadline(aLongTimeAgo)
	})
	fail := func(err error) (*http.Response, error) {
		stop()
		if fired.Load() {
			return nil, req.Context().Err()
		}
		return nil, err
	}
	stale := func(err error) error {
		if broken(err) {
			return &errStale{err}
		}
		return err
	}
	if t.WriteTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(t.WriteTimeout))
	}
	if err := writeRequest(c.bw, req); err != nil {
		return fail(stale(err))
	}
	if t.ResponseHeaderTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(t.ResponseHeaderTimeout))
	} else if t.BodyReadTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{}) // a body read's deadline from before
	}
	if fired.Load() {
		c.nc.SetDeadline(aLongTimeAgo) // cancelled while setting deadlines
	}
	limit := t.MaxResponseHeaderBytes
	if limit <= 0 {
		limit = DefaultMaxResponseHeaderBytes
	}
	c.lr.limit(limit - int64(c.br.Buffered()))
	if _, err := c.br.Peek(1); err != nil {
		return fail(stale(err))
	}
	var resp *http.Response
	for interim := 0; ; interim++ {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.lr.exceeded {
				err = ErrResponseHeaderTooLarge
			}
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == 101 {
			break
		}
		// 1xx (103 Early Hints...): not forwarded by this transport.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if interim+1 > maxInterim {
			return fail(ErrTooManyInterim)
		}
	}
	c.lr.unlimit()
	if resp.StatusCode == 101 {
		stop()
		return nil, errors.New("h1: unexpected 101 for a request without Upgrade")
	}
	if t.ResponseHeaderTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
	b := &body{rc: resp.Body, t: t, p: p, c: c, stop: stop, fired: &fired,
		reuse: !resp.Close && !req.Close, idle: t.BodyReadTimeout}
	if resp.Body == http.NoBody {
		b.eof = true
	}
	resp.Body = b
	return resp, nil
}

// closedByPeer reports whether an idle connection was closed or reset by
// the upstream (or sent something unasked), by a recv(MSG_PEEK|
// MSG_DONTWAIT) that never blocks. Connections that are not sockets are
// taken as open.
func (c *conn) closedByPeer() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n > 0 || err == nil || err != unix.EAGAIN && err != unix.EINTR
		return true
	})
	return closed
}

func newConn(nc net.Conn) *conn {
	lr := &limitReader{r: nc}
	return &conn{nc: nc, lr: lr, br: bufio.NewReaderSize(lr, 4096), bw: bufio.NewWriterSize(nc, 4096)}
}

// limitReader bounds the bytes read from the connection while a response
// head is read, so that an upstream cannot grow the edge's memory with an
// endless header.
type limitReader struct {
	r        io.Reader
	left     int64
	on       bool
	exceeded bool
}

func (l *limitReader) limit(n int64) { l.left, l.on, l.exceeded = max(n, 1), true, false }
func (l *limitReader) unlimit()      { l.on = false }

func (l *limitReader) Read(p []byte) (int, error) {
	if !l.on {
		return l.r.Read(p)
	}
	if l.left <= 0 {
		l.exceeded = true
		return 0, ErrResponseHeaderTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// writeRequest writes the request head (no body) and flushes.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if strings.ContainsAny(host, "\r\n") {
		return fmt.Errorf("h1: bad Host %q", host)
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// body returns the connection to the pool once the answer was read to the
// end; otherwise the connection is closed.
type body struct {
	rc     io.ReadCloser
	t      *Transport
	p      *pool
	c      *conn
	stop   func() bool
	fired  *atomic.Bool
	eof    bool
	reuse  bool
	closed bool
	idle   time.Duration
}

func (b *body) Read(p []byte) (int, error) {
	if b.idle > 0 && !b.eof {
		b.c.nc.SetReadDeadline(time.Now().Add(b.idle))
		if b.fired.Load() {
			// The request was cancelled meanwhile: keep its deadline.
			b.c.nc.SetDeadline(aLongTimeAgo)
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	stopped := b.stop()
	if b.eof && b.reuse && stopped && !b.fired.Load() {
		b.rc.Close()
		b.t.put(b.p, b.c)
		return nil
	}
	b.c.nc.Close() // first, so that closing the body does not drain it
	b.rc.Close()
	return nil
}
