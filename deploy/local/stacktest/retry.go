package stacktest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// LostAcks is a kafka-go transport that loses the broker's answer to the
// first n produce requests: the request reaches the broker, which appends
// the batch, then the connection is reset before the answer is read. The
// writer retries the batch, as it does after any network error, and the
// broker appends it again: the same messages at two offsets, as a real
// producer's retry makes them (kafka-go has no idempotent producer).
type LostAcks struct {
	*kafka.Transport
	left     atomic.Int64
	lost     atomic.Int64
	every    int64 // when > 0: lose the answer to one produce request in every
	produces atomic.Int64
}

// NewLostAcks returns a transport losing the answers to n produce requests.
func NewLostAcks(n int) *LostAcks { return newLostAcks(n, 0) }

// NewLostAcksEvery returns a transport losing the answer to one produce
// request in every k, for as long as it is used.
func NewLostAcksEvery(k int) *LostAcks { return newLostAcks(0, k) }

// lose reports whether the answer to the produce request just written is
// to be lost.
func (l *LostAcks) lose() bool {
	if l.every > 0 {
		return l.produces.Add(1)%l.every == 0
	}
	return l.left.Add(-1) >= 0
}

func newLostAcks(n, every int) *LostAcks {
	l := &LostAcks{every: int64(every)}
	l.left.Store(int64(n))
	d := &net.Dialer{Timeout: 5 * time.Second}
	l.Transport = &kafka.Transport{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &ackLosingConn{Conn: c, owner: l}, nil
	}}
	return l
}

// Lost returns how many answers were lost so far.
func (l *LostAcks) Lost() int { return int(l.lost.Load()) }

// ackLosingConn watches the request frames written (a 4-byte size, then
// the API key: 0 is Produce) and resets the connection on the read that
// follows a produce request, while its owner has answers to lose.
type ackLosingConn struct {
	net.Conn
	owner *LostAcks
	mu    sync.Mutex
	rest  int // bytes of the current frame still to be written
	head  []byte
	reset bool
}

func (c *ackLosingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	for i := 0; i < len(b); {
		if c.rest > 0 {
			k := min(c.rest, len(b)-i)
			c.rest -= k
			i += k
			continue
		}
		c.head = append(c.head, b[i])
		i++
		if len(c.head) == 6 {
			size := int(binary.BigEndian.Uint32(c.head[:4]))
			if binary.BigEndian.Uint16(c.head[4:6]) == 0 && c.owner.lose() {
				c.reset = true
			}
			c.rest = size - 2
			c.head = c.head[:0]
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *ackLosingConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	reset := c.reset
	c.reset = false
	c.mu.Unlock()
	if reset {
		// Let the broker append the batch, then lose its answer.
		time.Sleep(300 * time.Millisecond)
		c.owner.lost.Add(1)
		_ = c.Close()
		return 0, fmt.Errorf("answer lost on purpose: %w", syscall.ECONNRESET)
	}
	return c.Conn.Read(b)
}
