package runtimes

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"sync"
)

// capture keeps the first max bytes written to it and counts the rest. It
// never refuses a write: a child blocked on a full pipe would hang its run.
// Bytes it kept never change: it only appends.
type capture struct {
	buf     []byte
	max     int
	dropped int64
	// live, when set, has readers that follow buf as it grows: the one
	// writer changes buf's header (length, array) only under live.mu.
	live *Output
}

// set publishes buf, and counts dropped more bytes past the cap.
func (c *capture) set(buf []byte, dropped int) {
	if c.live == nil {
		c.buf = buf
		c.dropped += int64(dropped)
		return
	}
	c.live.mu.Lock()
	c.buf = buf
	c.dropped += int64(dropped)
	c.live.grewLocked()
	c.live.mu.Unlock()
}

// Small first, because most actions print little; runs must not each pay
// for a big buffer.
const captureMinGrow = 512

// discardBufs serve the reads past the cap, which are rare, so the common
// path allocates nothing but the kept bytes.
var discardBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (c *capture) Write(p []byte) (int, error) {
	n := min(len(p), c.max-len(c.buf))
	c.set(append(c.buf, p[:n]...), len(p)-n)
	return len(p), nil
}

// ReadFrom reads r to EOF straight into the kept buffer, sparing io.Copy's
// 32 KiB buffer on every run.
func (c *capture) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		var n int
		var err error
		if room := c.max - len(c.buf); room > 0 {
			buf := c.buf
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, min(max(cap(buf), captureMinGrow), room))
			}
			// Past len, so no reader looks at what Read writes.
			n, err = r.Read(buf[len(buf):min(cap(buf), c.max)])
			c.set(buf[:len(buf)+n], 0)
		} else {
			scratch := discardBufs.Get().(*[32 << 10]byte)
			n, err = r.Read(scratch[:])
			discardBufs.Put(scratch)
			c.set(c.buf, n)
		}
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// String is the kept text, marked when something was dropped.
func (c *capture) String() string {
	if c.dropped == 0 {
		return string(c.buf)
	}
	return string(c.buf) + "\n[troupe: output truncated, " + strconv.FormatInt(c.dropped, 10) + " bytes dropped]"
}

// JSON is the kept text when it is exactly one JSON document other than
// null, so scripts can return structured results by printing them.
func (c *capture) JSON() json.RawMessage {
	doc := bytes.TrimSpace(c.buf)
	if c.dropped > 0 || len(doc) == 0 || string(doc) == "null" || !json.Valid(doc) {
		return nil
	}
	return json.RawMessage(doc)
}
