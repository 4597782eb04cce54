package source

import (
	"context"
	"net/netip"
	"time"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

// File reads hosts and apps from the file store (DESIGN.md), watching the
// file; an invalid file keeps the last good lists.
type File struct {
	st    *store.File
	o     Options
	stats Stats
}

var _ Source = (*File)(nil)

// NewFile returns the source for the YAML file at path.
func NewFile(path string, o Options) *File {
	return &File{st: store.OpenFile(path, store.Options{Logger: o.logger()}), o: o}
}

func (f *File) String() string { return f.st.String() }

// Stats implements Source.
func (f *File) Stats() *Stats { return &f.stats }

// Run implements Source.
func (f *File) Run(ctx context.Context, sink Sink) error {
	log := f.o.logger()
	return f.st.Watch(ctx, func(d *model.Document, err error) {
		if err != nil {
			f.stats.Errors.Add(1)
			f.stats.Up.Store(false)
			log.Warn("edge source: keeping the last good lists", "source", f.String(), "err", err)
			return
		}
		apps := make(map[string][]netip.AddrPort, len(d.Apps))
		for a, eps := range d.Apps {
			apps[a] = eps
		}
		n, errs := sink.Replace(d.Hosts, apps)
		for _, e := range errs {
			f.stats.Errors.Add(1)
			log.Warn("edge source: app update failed", "source", f.String(), "err", e)
		}
		f.stats.Up.Store(true)
		f.stats.Updates.Add(uint64(n))
		f.stats.MarkSync(time.Now())
		log.Info("edge source: loaded", "source", f.String(), "hosts", len(d.Hosts), "apps", len(d.Apps), "changed", n)
	})
}
