package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/v6pod/v6pod/internal/fswatch"
)

// certStore holds the certificates of a folder, indexed by the DNS names
// of their leaves, and reloads a file when it changes. A file that fails
// to load is an error naming it; the certificate it held before keeps
// serving.
type certStore struct {
	dir  string
	def  string
	log  *slog.Logger
	m    *metrics
	mu   sync.Mutex              // writers
	byFn map[string]*loadedCert  // by base name (without .pem/.crt/.key)
	idx  atomic.Pointer[certIdx] // readers
}

type loadedCert struct {
	file  string
	cert  *tls.Certificate
	names []string
}

type certIdx struct {
	names map[string]*tls.Certificate
	def   *tls.Certificate
}

func newCertStore(dir, def string, log *slog.Logger, m *metrics) *certStore {
	s := &certStore{dir: dir, def: strings.ToLower(def), log: log, m: m, byFn: map[string]*loadedCert{}}
	s.idx.Store(&certIdx{names: map[string]*tls.Certificate{}})
	return s
}

// loadAll reads every certificate of the folder; it returns the problems
// (each naming its file) and keeps going past them.
func (s *certStore) loadAll() []error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return []error{fmt.Errorf("tls: %w", err)}
	}
	var errs []error
	bases := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if b, ok := certBase(e.Name()); ok {
			bases[b] = true
		}
	}
	for b := range bases {
		if err := s.load(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// certBase maps a file name to the certificate it belongs to.
func certBase(name string) (string, bool) {
	for _, ext := range []string{".pem", ".crt", ".key"} {
		if strings.HasSuffix(name, ext) && !strings.HasPrefix(name, ".") {
			return strings.TrimSuffix(name, ext), true
		}
	}
	return "", false
}

// load (re)loads one certificate by base name.
func (s *certStore) load(base string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pem := filepath.Join(s.dir, base+".pem")
	crt, key := filepath.Join(s.dir, base+".crt"), filepath.Join(s.dir, base+".key")
	var cert tls.Certificate
	var err error
	file := pem
	switch {
	case exists(pem):
		cert, err = tls.LoadX509KeyPair(pem, pem)
	case exists(crt) && exists(key):
		file = crt
		cert, err = tls.LoadX509KeyPair(crt, key)
	case exists(crt):
		file, err = crt, fmt.Errorf("its key %s is missing", key)
	case exists(key):
		file, err = key, fmt.Errorf("its certificate %s is missing", crt)
	default:
		if old := s.byFn[base]; old != nil {
			err = fmt.Errorf("removed; the certificate loaded before keeps serving")
			file = old.file
		} else {
			return nil
		}
	}
	if err == nil && cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	var names []string
	if err == nil {
		names = leafNames(cert.Leaf)
		if len(names) == 0 {
			err = errors.New("the leaf certificate names no DNS name")
		}
	}
	if err == nil && time.Now().After(cert.Leaf.NotAfter) {
		s.log.Warn("edge tls: certificate expired", "file", file, "not_after", cert.Leaf.NotAfter)
	}
	if err != nil {
		err = fmt.Errorf("tls: certificate %s: %w", file, err)
		s.log.Error("edge tls: certificate not loaded, the previous one (if any) keeps serving", "file", file, "err", err)
		s.m.certLoads.WithLabelValues("error").Inc()
		return err
	}
	s.byFn[base] = &loadedCert{file: file, cert: &cert, names: names}
	s.m.certLoads.WithLabelValues("ok").Inc()
	s.log.Info("edge tls: certificate loaded", "file", file, "names", names, "not_after", cert.Leaf.NotAfter)
	s.reindex()
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func leafNames(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	if len(out) == 0 && c.Subject.CommonName != "" && !strings.ContainsAny(c.Subject.CommonName, " /") {
		out = append(out, strings.ToLower(c.Subject.CommonName))
	}
	return out
}

// reindex rebuilds the name index (certificates are few: hundreds).
func (s *certStore) reindex() {
	idx := &certIdx{names: map[string]*tls.Certificate{}}
	bases := make([]string, 0, len(s.byFn))
	for b := range s.byFn {
		bases = append(bases, b)
	}
	slices.Sort(bases) // deterministic winner when two files name the same host
	for _, b := range bases {
		lc := s.byFn[b]
		for _, n := range lc.names {
			if _, dup := idx.names[n]; !dup {
				idx.names[n] = lc.cert
			}
		}
	}
	if s.def != "" {
		idx.def = idx.lookup(s.def)
	}
	s.idx.Store(idx)
}

func (idx *certIdx) lookup(name string) *tls.Certificate {
	if c := idx.names[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := idx.names["*"+name[i:]]; c != nil {
			return c
		}
	}
	return nil
}

// getCertificate is tls.Config.GetCertificate: by SNI, then the default.
func (s *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	idx := s.idx.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := idx.lookup(name); c != nil {
			return c, nil
		}
	}
	if idx.def != nil {
		return idx.def, nil
	}
	return nil, fmt.Errorf("edge tls: no certificate for %q", hello.ServerName)
}

// count is the number of certificates loaded.
func (s *certStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byFn)
}

// watch reloads changed certificates until ctx ends.
func (s *certStore) watch(ctx context.Context) error {
	return fswatch.Watch(ctx, s.dir, 100*time.Millisecond, func(name string) {
		if b, ok := certBase(name); ok {
			_ = s.load(b)
		}
	})
}

// tlsConfig returns the server TLS configuration: TLS 1.2 and up, Go's
// modern cipher suites (AEAD with forward secrecy only), h2 and http/1.1
// by ALPN.
func (s *certStore) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}
