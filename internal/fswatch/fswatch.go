// Package fswatch tells when files in a folder change, including when a
// file is replaced by a rename, which is how careful writers (ops, editors,
// config management) update files.
package fswatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch calls changed(name) for each file of dir that is written, created,
// renamed into place or removed, until ctx ends. Events that arrive within
// settle of each other are coalesced into one call per name, so a writer's
// several writes give one reload. Watch uses inotify and falls back to
// polling modification times every second where inotify is unavailable.
func Watch(ctx context.Context, dir string, settle time.Duration, changed func(name string)) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return poll(ctx, dir, changed)
	}
	const mask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MODIFY
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fswatch: watch %s: %w", dir, err)
	}
	// A file descriptor wrapped in os.File gets the runtime poller, so the
	// read below wakes on events and on Close.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	go func() {
		<-ctx.Done()
		f.Close()
	}()

	pending := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	events := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64*1024)
		for {
			n, err := f.Read(buf)
			if err != nil {
				readErr <- err
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				off += unix.SizeofInotifyEvent + int(ev.Len)
				name := string(trimNUL(nameBytes))
				if name == "" {
					continue
				}
				select {
				case events <- name:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("fswatch: read %s: %w", dir, err)
		case name := <-events:
			pending[name] = true
			timer.Reset(settle)
		case <-timer.C:
			for name := range pending {
				changed(name)
			}
			clear(pending)
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// poll is the fallback: compare modification times and sizes each second.
func poll(ctx context.Context, dir string, changed func(string)) error {
	type stamp struct {
		mod  time.Time
		size int64
	}
	scan := func() map[string]stamp {
		m := map[string]stamp{}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				m[e.Name()] = stamp{fi.ModTime(), fi.Size()}
			}
		}
		return m
	}
	last := scan()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := scan()
		for name, s := range now {
			if old, ok := last[name]; !ok || old != s {
				changed(name)
			}
		}
		for name := range last {
			if _, ok := now[name]; !ok {
				changed(name)
			}
		}
		last = now
	}
}

// WatchFile calls changed whenever the file at path changes or is replaced,
// until ctx ends. It watches the file's folder.
func WatchFile(ctx context.Context, path string, settle time.Duration, changed func()) error {
	dir, base := filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	return Watch(ctx, dir, settle, func(name string) {
		if name == base {
			changed()
		}
	})
}
