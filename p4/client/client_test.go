package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"

	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/client"
	"github.com/v6pod/v6pod/p4/sim"
)

func TestClientAgainstSim(t *testing.T) {
	s := sim.New()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, l.Addr().String(), 1, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Pipeline(ctx); ok || err != nil {
		t.Fatalf("pipeline on a fresh device: %v %v", ok, err)
	}
	info, _ := p4.P4Info()
	if err := c.SetPipeline(ctx, info, nil, 5); err != nil {
		t.Fatal(err)
	}
	if cookie, ok, err := c.Pipeline(ctx); !ok || err != nil || cookie != 5 {
		t.Fatalf("cookie %d %v %v", cookie, ok, err)
	}
	if err := c.Write(ctx, nil); err != nil {
		t.Fatal("an empty batch is not an error")
	}
	// A failing batch reports per-update errors.
	bad := &p4v1.Update{Type: p4v1.Update_DELETE, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{
		TableId: p4.TableMaglev,
		Match: []*p4v1.FieldMatch{
			{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{1}}}},
			{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{1}}}},
		},
	}}}}
	err = c.Write(ctx, []*p4v1.Update{bad})
	var we *client.WriteError
	if !errors.As(err, &we) || len(we.Updates) != 1 || codes.Code(we.Updates[0].CanonicalCode) != codes.NotFound ||
		!strings.Contains(err.Error(), "update 0: NotFound") {
		t.Fatalf("write error: %v", err)
	}
	if es, err := c.ReadTable(ctx, p4.TableMaglev); err != nil || len(es) != 0 {
		t.Fatalf("read: %v %v", es, err)
	}
	if d, err := c.ReadCounter(ctx, p4.CounterVIPPackets, 0); err != nil || d.PacketCount != 0 {
		t.Fatalf("counter: %v %v", d, err)
	}
	// The device going away ends the stream.
	s.Stop()
	select {
	case <-c.Done():
		if c.Err() == nil {
			t.Fatal("no reason for the end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end")
	}
}
