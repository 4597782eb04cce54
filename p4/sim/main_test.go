package sim

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

func TestMainServesP4Runtime(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() { done <- Main(ctx, []string{"--listen", addr, "--device-id", "3"}, &out, &errb) }()
	// A controller with device id 3 gets primary and sets the pipeline.
	var c interface{ Close() error }
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, err := dialDevice(addr, 3)
		if err == nil {
			c = cl
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulator not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, args := range [][]string{{"--port", "x"}, {"--port", "600=eth0"}, {"stray"}, {"--port", "1=a", "--port", "1=b"}} {
		if code := Main(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}
