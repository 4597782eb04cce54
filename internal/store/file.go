package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/v6pod/v6pod/internal/fswatch"
	"github.com/v6pod/v6pod/internal/model"
)

// File is the file store: one YAML document (see DESIGN.md). Readers watch
// the file's folder; writers take an flock on <file>.lock, read the file,
// apply their change, check under the lock that the file is still what they
// read (and, with IfVersion, that its version is the one the caller read),
// write a temporary file with the version bumped and rename it into place.
type File struct {
	path string
	log  *slog.Logger
}

var _ Store = (*File)(nil)

// OpenFile returns the file store at path. The file need not exist yet: it
// reads as an empty document until the first write creates it.
func OpenFile(path string, opts Options) *File {
	return &File{path: path, log: opts.logger()}
}

func (f *File) String() string { return "file://" + f.path }

// Close implements Store; the file store holds nothing open.
func (f *File) Close() error { return nil }

// Load implements Store. A missing file is an empty document at version 0.
func (f *File) Load(context.Context) (*model.Document, error) {
	d, _, err := readFile(f.path)
	return d, err
}

// Exists reports whether the store file exists (a missing one reads as an
// empty document).
func (f *File) Exists() bool {
	_, err := os.Stat(f.path)
	return err == nil
}

func readFile(path string) (*model.Document, []byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &model.Document{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	d, err := model.ParseYAML(path, b)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return d, b, nil
}

// Path is the store file's path as given (a symlink is written through).
func (f *File) Path() string { return f.path }

// Update implements Store. The writers' lock and the write go to the file
// a symlink points to, so the link stays a link.
func (f *File) Update(ctx context.Context, fn func(*model.Document) error, opts ...UpdateOption) (*model.Document, error) {
	o := updateOptions(opts)
	path, err := resolveLinks(f.path)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", f.path, err)
	}
	if _, err := os.Stat(filepath.Dir(path)); errors.Is(err, fs.ErrNotExist) && !o.dryRun {
		return nil, fmt.Errorf("store: %s: cannot create the file: folder %s does not exist", f.path, filepath.Dir(path))
	}
	if !o.dryRun {
		unlock, err := lockFile(ctx, path)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	old, oldBytes, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the file before writing to it)", err)
	}
	if o.ifVersion && old.Version != o.version {
		return nil, &VersionError{Read: o.version, Current: old.Version}
	}
	d := old.Clone()
	if err := fn(d); err != nil {
		return nil, err
	}
	d.Normalize()
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("store: %s: the change is not valid: %w", f.path, err)
	}
	d.Version = old.Version
	if same, err := model.Equal(old, d); err != nil || same {
		return old, err
	}
	d.Version = old.Version + 1
	out, err := model.MarshalYAML(d)
	if err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	if o.dryRun {
		return d, nil
	}
	// Someone who does not take the lock (an editor) may have written
	// since we read; never overwrite that.
	if now, err := os.ReadFile(path); err == nil && !bytes.Equal(now, oldBytes) || err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, ErrConflict
	}
	if err := writeAtomic(path, out); err != nil {
		return nil, fmt.Errorf("store: write %s: %w", path, err)
	}
	f.log.Info("store written", "store", f.String(), "version", d.Version)
	return d, nil
}

// resolveLinks follows symlinks (even a dangling one, whose target is
// yet to be created) to the file they name.
func resolveLinks(path string) (string, error) {
	for range 40 {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return path, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("too many levels of symbolic links")
}

// lockFile takes the writers' flock on <path>.lock, waiting until ctx
// ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	lf, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	start := time.Now()
	for {
		err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(lf.Fd()), unix.LOCK_UN); lf.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			lf.Close()
			return nil, fmt.Errorf("store: lock %s.lock: %w", path, err)
		}
		select {
		case <-ctx.Done():
			lf.Close()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("store: timed out after %s: another writer (ops) holds %s.lock", time.Since(start).Round(time.Second), path)
			}
			return nil, fmt.Errorf("store: waiting for the lock %s.lock: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeAtomic writes b to a temporary file beside path, syncs it and
// renames it over path, so readers see the old or the new file, never half.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		// Keep the owner when root rewrites a file it does not own.
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
				tmp.Close()
				return err
			}
		}
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Watch implements Store: it reads the file at once and after each change
// to it, including a replacement by rename.
func (f *File) Watch(ctx context.Context, fn func(*model.Document, error)) error {
	var last []byte    // the bytes last delivered
	var lastErr string // the error last reported, so a re-read repeats none
	fail := func(err error) {
		if err.Error() != lastErr {
			lastErr = err.Error()
			fn(nil, err)
		}
	}
	missing := fmt.Errorf("store: %s: file removed; keeping the last good data", f.path)
	reload := func() {
		b, err := os.ReadFile(f.path)
		if err == nil && last != nil && bytes.Equal(b, last) {
			return // a touch, a re-read, or our own event twice
		}
		last = nil // set again on success: after an error, good bytes are news
		if errors.Is(err, fs.ErrNotExist) {
			fail(missing)
			return
		}
		if err != nil {
			fail(fmt.Errorf("store: %w", err))
			return
		}
		d, err := model.ParseYAML(f.path, b)
		if err != nil {
			fail(fmt.Errorf("store: %w", err))
			return
		}
		last, lastErr = b, ""
		fn(d, nil)
	}
	// The file's folder is watched, and when the path is a symlink the
	// target's folder too (config management links a file into place and
	// rewrites the target). A slow re-read catches what events cannot: a
	// link pointed at another folder, or a change made while the watches
	// were still being set up.
	errc := make(chan error, 2)
	events := make(chan struct{}, 1)
	notify := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	watch := func(path string) {
		go func() { errc <- fswatch.WatchFile(ctx, path, 50*time.Millisecond, notify) }()
	}
	watch(f.path)
	if target, err := filepath.EvalSymlinks(f.path); err == nil && target != f.path {
		watch(target)
	}
	resync := time.NewTicker(2 * time.Second)
	defer resync.Stop()
	if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
		// Not written yet: an empty store, as Load says, until it is.
		lastErr = missing.Error()
		fn(&model.Document{}, nil)
	} else {
		reload()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				return err
			}
			return nil
		case <-events:
			reload()
		case <-resync.C:
			reload()
		}
	}
}
