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

// VersionError is returned by Update with IfVersion when the store's
// version is not the one the caller read (an old export, say). Retrying
// does not help: the caller's data is stale.
type VersionError struct{ Read, Current uint64 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("store: the data was read at version %d but the store is at version %d now; someone changed it since", e.Read, e.Current)
}

// UpdateOption changes what Update does.
type UpdateOption func(*updateOpts)

type updateOpts struct {
	dryRun    bool
	ifVersion bool
	version   uint64
	dropBad   bool
	badKeys   []string
}

func updateOptions(opts []UpdateOption) updateOpts {
	var o updateOpts
	for _, f := range opts {
		f(&o)
	}
	return o
}

// DryRun makes Update do everything (read, fn, every check the store
// makes) but the write; it returns the document it would have written.
func DryRun() UpdateOption { return func(o *updateOpts) { o.dryRun = true } }

// IfVersion makes Update refuse, with a *VersionError, when the store is
// not at version v (the Version of the document the caller read).
func IfVersion(v uint64) UpdateOption {
	return func(o *updateOpts) { o.ifVersion, o.version = true, v }
}

// DropBad makes Update read tolerantly (see LoadPartial): fn gets the
// valid part, and the named bad keys — every bad key when none is named —
// are deleted by the write. It is for repairs (ops import, ops pool delete
// of a broken key); the file store, one document, ignores it.
func DropBad(keys ...string) UpdateOption {
	return func(o *updateOpts) { o.dropBad, o.badKeys = true, keys }
}

// Problem is one unreadable or invalid object a tolerant read left out.
type Problem struct {
	Key  string // the Consul key, or "" for the document as a whole
	Kind string // "pools", "routes", "hosts", "version", or ""
	Name string // the pool, route or host name from the key
	Err  error
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Err.Error()
	}
	return fmt.Sprintf("key %s: %v", p.Key, p.Err)
}

// BadDataError is a read that found bad keys (Consul): Load and Watch
// refuse the whole store then, and Problems says which keys are bad.
type BadDataError struct {
	Store    string
	Problems []Problem
	err      error
}

func (e *BadDataError) Error() string { return fmt.Sprintf("store %s: %v", e.Store, e.err) }
func (e *BadDataError) Unwrap() error { return e.err }

// LoadPartial reads what can be read: stores made of many objects (Consul)
// return the valid ones and the list of the bad ones, where Load fails on
// the first; other stores behave as Load. Readers that act on the data
// (razor) use Load or Watch; LoadPartial is for operators' views and
// repairs.
func LoadPartial(ctx context.Context, st Store) (*model.Document, []Problem, error) {
	if pl, ok := st.(interface {
		LoadPartial(context.Context) (*model.Document, []Problem, error)
	}); ok {
		return pl.LoadPartial(ctx)
	}
	d, err := st.Load(ctx)
	return d, nil, err
}

// IsConsulURL reports whether a store URL names a Consul store (any case
// of the scheme).
func IsConsulURL(raw string) bool {
	u, err := url.Parse(strings.TrimSpace(raw))
	return err == nil && strings.EqualFold(u.Scheme, "consul")
}

// Store is where the pod's shared data lives.
type Store interface {
	// Load reads the current document.
	Load(ctx context.Context) (*model.Document, error)
	// Update reads the document, lets fn change a copy of it, checks the
	// result (model.Document.Validate) and writes what changed with
	// check-and-set. It returns the document as written; when fn changed
	// nothing it writes nothing. ErrConflict means a concurrent writer won:
	// fn may run again on fresh data. Options: DryRun, IfVersion, DropBad.
	Update(ctx context.Context, fn func(*model.Document) error, opts ...UpdateOption) (*model.Document, error)
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
	switch strings.ToLower(u.Scheme) {
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
		if open, ok := openers[strings.ToLower(u.Scheme)]; ok {
			return open(u, opts)
		}
		return nil, fmt.Errorf("store %q: unknown kind %q; want file:// or consul://", rawURL, u.Scheme)
	}
}

// openers holds the store kinds beyond the file store, by URL scheme.
var openers = map[string]func(*url.URL, Options) (Store, error){}
