// Package store reads, watches and writes the pod's shared data (pools,
// routes, hosts, apps) in the file store or in Consul KV, with
// check-and-set writes so concurrent operators never lose an update.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/v6pod/v6pod/internal/model"
)

// ErrConflict is returned by Update when someone else changed what was
// read before the write could land. Read again and retry.
var ErrConflict = errors.New("store: conflict: the data changed since it was read; read it again and retry")

// Store is where the pod's shared data lives.
type Store interface {
	// Load reads the current document.
	Load(ctx context.Context) (*model.Document, error)
	// Update reads the document, lets fn change a copy of it, checks the
	// result (model.Document.Validate) and writes what changed with
	// check-and-set. It returns the document as written; when fn changed
	// nothing it writes nothing. ErrConflict means a concurrent writer won.
	Update(ctx context.Context, fn func(*model.Document) error) (*model.Document, error)
	// Watch calls fn with the current document at once, and again on each
	// change, until ctx ends. When reading fails (a bad file, Consul
	// unreachable) fn gets the error and a nil document; the caller keeps
	// its last good data.
	Watch(ctx context.Context, fn func(*model.Document, error)) error
	// String names the store for logs, never with secrets.
	String() string
	Close() error
}

// Options are shared by the store kinds.
type Options struct {
	Logger *slog.Logger
	// ConsulToken is the ACL token; CONSUL_HTTP_TOKEN is used when empty.
	ConsulToken string
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Open opens a store named by URL: file:///path.yaml or
// consul://host:port/prefix (see DESIGN.md).
func Open(rawURL string, opts Options) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store %q: a file URL has no host; write file:///absolute/path.yaml", rawURL)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("store %q: no file path", rawURL)
		}
		return OpenFile(u.Path, opts), nil
	case "":
		if strings.HasSuffix(rawURL, ".yaml") || strings.HasSuffix(rawURL, ".yml") {
			return OpenFile(rawURL, opts), nil
		}
		return nil, fmt.Errorf("store %q: want file:///path.yaml or consul://host:port/prefix", rawURL)
	default:
		if open, ok := openers[u.Scheme]; ok {
			return open(u, opts)
		}
		return nil, fmt.Errorf("store %q: unknown kind %q; want file:// or consul://", rawURL, u.Scheme)
	}
}

// openers holds the store kinds beyond the file store, by URL scheme.
var openers = map[string]func(*url.URL, Options) (Store, error){}
