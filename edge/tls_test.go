package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "v6pod test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: key, pool: pool}
}

var serial int64 = 100

// issue writes a leaf for names (chain and key in one PEM) to path.
func (ca *testCA) issue(t *testing.T, path string, names ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})...)
	writeRaw(t, path, string(out))
	c, _ := x509.ParseCertificate(der)
	return c
}

// handshake connects with SNI name and returns the leaf the edge showed
// and the negotiated protocol.
func handshake(t *testing.T, addr, name string, pool *x509.CertPool) (*x509.Certificate, string, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0], st.NegotiatedProtocol, nil
}

func TestTLSCertificateBySNIAndReload(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	shopCert := ca.issue(t, filepath.Join(dir, "shop.pem"), "www.shop.test", "shop.test")
	blogCert := ca.issue(t, filepath.Join(dir, "blog.pem"), "*.blog.test")
	up := startUpstream(t, "up", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"www.shop.test": "shop", "*.blog.test": "shop"}, map[string][]*upstream{"shop": {up}})
	s := startEdge(t, Config{Source: url, Listen: []Listener{{Addr: "[::1]:0", TLS: true}}, TLS: TLS{CertDir: dir, Default: "shop.test"}})
	addr := s.Addrs()[0].String()

	for _, tc := range []struct {
		sni  string
		want *x509.Certificate
	}{
		{"www.shop.test", shopCert},
		{"WWW.SHOP.TEST", shopCert},
		{"a.blog.test", blogCert},
		{"", shopCert}, // no SNI: the default
	} {
		leaf, proto, err := handshake(t, addr, tc.sni, ca.pool)
		if tc.sni == "" {
			// Without SNI the client cannot verify a name; check the
			// certificate without verification.
			conn, err2 := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err2 != nil {
				t.Fatal(err2)
			}
			leaf, err = conn.ConnectionState().PeerCertificates[0], nil
			proto = "h2"
			conn.Close()
		}
		if err != nil {
			t.Fatalf("SNI %q: %v", tc.sni, err)
		}
		if !leaf.Equal(tc.want) {
			t.Errorf("SNI %q: got the certificate for %v", tc.sni, leaf.DNSNames)
		}
		if proto != "h2" {
			t.Errorf("SNI %q: ALPN %q, want h2", tc.sni, proto)
		}
	}
	// TLS 1.1 is refused.
	if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "www.shop.test", RootCAs: ca.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// A broken file: an error naming it, and the old certificate serves on.
	writeRaw(t, filepath.Join(dir, "shop.pem"), "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
	waitFor(t, 5*time.Second, "the failed reload", func() bool {
		return counterValue(s.metrics.certLoads.WithLabelValues("error")) >= 1
	})
	if leaf, _, err := handshake(t, addr, "www.shop.test", ca.pool); err != nil || !leaf.Equal(shopCert) {
		t.Fatalf("after a broken file: %v (old certificate must keep serving)", err)
	}
	if err := s.certs.load("shop"); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "shop.pem")) {
		t.Errorf("error %v does not name the file", err)
	}
	// A good replacement is picked up.
	newShop := ca.issue(t, filepath.Join(dir, "shop.pem"), "www.shop.test")
	waitFor(t, 5*time.Second, "the new certificate", func() bool {
		leaf, _, err := handshake(t, addr, "www.shop.test", ca.pool)
		return err == nil && leaf.Equal(newShop)
	})
	// A crt without its key is an error naming the file.
	os.WriteFile(filepath.Join(dir, "lonely.crt"), []byte("x"), 0o644)
	if err := s.certs.load("lonely"); err == nil || !strings.Contains(err.Error(), "lonely.crt") {
		t.Errorf("missing key: %v", err)
	}
}

func TestHTTP2EndToEnd(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	ca.issue(t, filepath.Join(dir, "shop.pem"), "www.shop.test")
	up := startUpstream(t, "up", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, "got "+string(b))
			return
		}
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto")+" "+r.Proto)
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"www.shop.test": "shop", "plain.test": "shop"}, map[string][]*upstream{"shop": {up}})
	s := startEdge(t, Config{Source: url, TLS: TLS{CertDir: dir},
		Listen: []Listener{{Addr: "[::1]:0", TLS: true}, {Addr: "[::1]:0", H2C: true}}})
	var tlsAddr, plainAddr string
	for _, ap := range s.Addrs() { // order of binding is not fixed: ask each
		if c, err := tls.Dial("tcp", ap.String(), &tls.Config{InsecureSkipVerify: true, ServerName: "www.shop.test"}); err == nil {
			c.Close()
			tlsAddr = ap.String()
		} else {
			plainAddr = ap.String()
		}
	}
	// h2 over TLS.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		}}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get("https://www.shop.test/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "https HTTP/1.1" {
		t.Fatalf("client proto %s, upstream saw %q", resp.Proto, b)
	}
	// A request body over h2 (the net/http.Transport path).
	resp, err = c.Post("https://www.shop.test/", "text/plain", strings.NewReader("body over h2"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "got body over h2" {
		t.Fatalf("POST over h2: %s %q", resp.Proto, b)
	}
	// h2c (prior knowledge) on the plain listener.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c2 := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+plainAddr+"/", nil)
	req.Host = "plain.test"
	resp, err = c2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "http HTTP/1.1" {
		t.Fatalf("h2c: client proto %s, upstream saw %q", resp.Proto, b)
	}
}
