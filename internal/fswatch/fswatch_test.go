package fswatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchFileSeesWriteAndRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(path, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- WatchFile(ctx, path, 20*time.Millisecond, func() { got <- struct{}{} }) }()
	time.Sleep(50 * time.Millisecond) // let the watch start

	wait := func(what string) {
		t.Helper()
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("no event after %s", what)
		}
	}
	if err := os.WriteFile(path, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("write in place")

	tmp := filepath.Join(dir, ".pods.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	wait("replace by rename")

	// Events for other files of the folder are not reported.
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644)
	select {
	case <-got:
		t.Error("event for another file")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
