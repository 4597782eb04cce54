// Package client is a small P4Runtime client: one device, one role, with
// arbitration kept on a StreamChannel, batched writes with per-update
// errors, and reads of whole tables and extern arrays.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Client talks to one P4Runtime device.
type Client struct {
	conn     *grpc.ClientConn
	rt       p4v1.P4RuntimeClient
	deviceID uint64
	election *p4v1.Uint128

	cancel context.CancelFunc
	stream p4v1.P4Runtime_StreamChannelClient

	mu        sync.Mutex
	primary   bool
	noPrimary bool          // the device last said the role has no primary
	highest   *p4v1.Uint128 // the election ID the device last reported
	changed   chan struct{} // closed and replaced on every arbitration update
	done      chan struct{} // closed when the stream ends
	err       error         // why the stream ended
}

// Dial connects to addr (plain-text gRPC, as simple_switch_grpc and most
// switch agents serve it) and opens the arbitration stream with the given
// election ID. It returns once the device answered the arbitration,
// primary or not; see Primary and WaitPrimary.
func Dial(ctx context.Context, addr string, deviceID uint64, electionHigh, electionLow uint64) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("p4runtime: dial %s: %w", addr, err)
	}
	c := &Client{
		conn:     conn,
		rt:       p4v1.NewP4RuntimeClient(conn),
		deviceID: deviceID,
		election: &p4v1.Uint128{High: electionHigh, Low: electionLow},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	sctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	st, err := c.rt.StreamChannel(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("p4runtime: %s: stream: %w", addr, err)
	}
	c.stream = st
	if err := st.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{
		Arbitration: &p4v1.MasterArbitrationUpdate{DeviceId: deviceID, ElectionId: c.election},
	}}); err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("p4runtime: %s: send arbitration: %w", addr, err)
	}
	first := c.changed
	go c.recv()
	select {
	case <-first:
		return c, nil
	case <-c.done:
		err := c.Err()
		c.Close()
		return nil, fmt.Errorf("p4runtime: %s: arbitration: %w", addr, err)
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("p4runtime: %s: arbitration: %w", addr, ctx.Err())
	}
}

func (c *Client) recv() {
	for {
		m, err := c.stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = errors.New("stream closed by the device")
			}
			c.mu.Lock()
			c.primary = false
			c.err = err
			close(c.done)
			c.mu.Unlock()
			return
		}
		if a := m.GetArbitration(); a != nil {
			c.mu.Lock()
			id := a.GetElectionId()
			c.primary = a.GetStatus().GetCode() == int32(codes.OK) && id.GetHigh() == c.election.High && id.GetLow() == c.election.Low
			c.noPrimary = a.GetStatus().GetCode() == int32(codes.NotFound)
			c.highest = id
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}
}

// Primary reports whether the device last named this client primary.
func (c *Client) Primary() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary
}

// NoPrimary reports whether the device last said the role has no primary
// (P4Runtime 1.4: the primary left and no client has arbitrated since with
// an election ID at least as high as the highest seen), and that highest
// election ID, if the device gave it.
func (c *Client) NoPrimary() (bool, *p4v1.Uint128) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.noPrimary, c.highest
}

// Rearbitrate sends a new arbitration update with another election ID on
// the open stream; later requests carry it. Not safe to call concurrently
// with itself.
func (c *Client) Rearbitrate(electionHigh, electionLow uint64) error {
	id := &p4v1.Uint128{High: electionHigh, Low: electionLow}
	c.mu.Lock()
	c.election = id
	c.mu.Unlock()
	if err := c.stream.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{
		Arbitration: &p4v1.MasterArbitrationUpdate{DeviceId: c.deviceID, ElectionId: id},
	}}); err != nil {
		return fmt.Errorf("p4runtime: send arbitration: %w", err)
	}
	return nil
}

func (c *Client) electionID() *p4v1.Uint128 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.election
}

// Changed returns a channel closed at the next arbitration update from
// the device (this client made primary, or demoted to backup). Take it
// before checking Primary so no update is missed.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitPrimary waits until this client is primary.
func (c *Client) WaitPrimary(ctx context.Context) error {
	for {
		c.mu.Lock()
		p, ch := c.primary, c.changed
		c.mu.Unlock()
		if p {
			return nil
		}
		select {
		case <-ch:
		case <-c.done:
			return c.Err()
		case <-ctx.Done():
			return fmt.Errorf("p4runtime: not primary: %w", ctx.Err())
		}
	}
}

// Done is closed when the arbitration stream ends (device gone).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the stream ended, nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the stream and the connection.
func (c *Client) Close() error {
	c.cancel()
	return c.conn.Close()
}

// Pipeline returns the device's pipeline cookie; ok is false when the
// device runs no pipeline.
func (c *Client) Pipeline(ctx context.Context) (cookie uint64, ok bool, err error) {
	r, err := c.rt.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{
		DeviceId: c.deviceID, ResponseType: p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY,
	})
	if status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.NotFound && strings.Contains(err.Error(), "pipeline") {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("p4runtime: get pipeline: %w", err)
	}
	if r.GetConfig().GetCookie() == nil && r.GetConfig().GetP4Info() == nil {
		return 0, false, nil
	}
	return r.GetConfig().GetCookie().GetCookie(), true, nil
}

// SetPipeline installs a pipeline with VERIFY_AND_COMMIT: the device's
// forwarding state is cleared.
func (c *Client) SetPipeline(ctx context.Context, info *p4configv1.P4Info, deviceConfig []byte, cookie uint64) error {
	return c.SetPipelineAction(ctx, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, info, deviceConfig, cookie)
}

// SetPipelineAction installs a pipeline with the given action, e.g.
// RECONCILE_AND_COMMIT to keep the forwarding state where the device can.
func (c *Client) SetPipelineAction(ctx context.Context, action p4v1.SetForwardingPipelineConfigRequest_Action, info *p4configv1.P4Info, deviceConfig []byte, cookie uint64) error {
	_, err := c.rt.SetForwardingPipelineConfig(ctx, &p4v1.SetForwardingPipelineConfigRequest{
		DeviceId:   c.deviceID,
		ElectionId: c.electionID(),
		Action:     action,
		Config: &p4v1.ForwardingPipelineConfig{
			P4Info: info, P4DeviceConfig: deviceConfig,
			Cookie: &p4v1.ForwardingPipelineConfig_Cookie{Cookie: cookie},
		},
	})
	if err != nil {
		return fmt.Errorf("p4runtime: set pipeline: %w", err)
	}
	return nil
}

// WriteError is a Write that failed for some updates.
type WriteError struct {
	Status  *status.Status
	Updates []*p4v1.Error // one per update when the device said so
}

func (e *WriteError) Error() string {
	var msgs []string
	for i, u := range e.Updates {
		if codes.Code(u.CanonicalCode) != codes.OK {
			msgs = append(msgs, fmt.Sprintf("update %d: %s: %s", i, codes.Code(u.CanonicalCode), u.Message))
			if len(msgs) == 3 {
				break
			}
		}
	}
	if len(msgs) == 0 {
		return "p4runtime: write: " + e.Status.Err().Error()
	}
	return "p4runtime: write: " + strings.Join(msgs, "; ")
}

// Write sends one batch (CONTINUE_ON_ERROR). A failure is a *WriteError
// when the device reported per-update errors.
func (c *Client) Write(ctx context.Context, updates []*p4v1.Update) error {
	if len(updates) == 0 {
		return nil
	}
	_, err := c.rt.Write(ctx, &p4v1.WriteRequest{DeviceId: c.deviceID, ElectionId: c.electionID(), Updates: updates})
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	we := &WriteError{Status: st}
	for _, d := range st.Details() {
		if pe, ok := d.(*p4v1.Error); ok {
			we.Updates = append(we.Updates, pe)
		}
	}
	if len(we.Updates) == 0 {
		return fmt.Errorf("p4runtime: write: %w", err)
	}
	return we
}

// Read reads the entities matching the request entities.
func (c *Client) Read(ctx context.Context, entities ...*p4v1.Entity) ([]*p4v1.Entity, error) {
	st, err := c.rt.Read(ctx, &p4v1.ReadRequest{DeviceId: c.deviceID, Entities: entities})
	if err != nil {
		return nil, fmt.Errorf("p4runtime: read: %w", err)
	}
	var out []*p4v1.Entity
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("p4runtime: read: %w", err)
		}
		out = append(out, r.Entities...)
	}
}

// ReadTable returns every entry of a table.
func (c *Client) ReadTable(ctx context.Context, tableID uint32) ([]*p4v1.TableEntry, error) {
	es, err := c.Read(ctx, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tableID}}})
	if err != nil {
		return nil, err
	}
	out := make([]*p4v1.TableEntry, 0, len(es))
	for _, e := range es {
		if te := e.GetTableEntry(); te != nil {
			out = append(out, te)
		}
	}
	return out, nil
}

// ReadMeters returns every cell of an indexed meter.
func (c *Client) ReadMeters(ctx context.Context, meterID uint32) ([]*p4v1.MeterEntry, error) {
	es, err := c.Read(ctx, &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: &p4v1.MeterEntry{MeterId: meterID}}})
	if err != nil {
		return nil, err
	}
	out := make([]*p4v1.MeterEntry, 0, len(es))
	for _, e := range es {
		if me := e.GetMeterEntry(); me != nil {
			out = append(out, me)
		}
	}
	return out, nil
}

// ReadCounter returns one cell of an indexed counter.
func (c *Client) ReadCounter(ctx context.Context, counterID uint32, index int64) (*p4v1.CounterData, error) {
	es, err := c.Read(ctx, &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: &p4v1.CounterEntry{CounterId: counterID, Index: &p4v1.Index{Index: index}}}})
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if ce := e.GetCounterEntry(); ce != nil {
			return ce.GetData(), nil
		}
	}
	return nil, fmt.Errorf("p4runtime: counter %#x[%d] not returned", counterID, index)
}
