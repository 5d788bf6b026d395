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
type capture struct {
	buf     []byte
	max     int
	dropped int64
}

// Small first, because most actions print little; runs must not each pay
// for a big buffer.
const captureMinGrow = 512

// discardBufs serve the reads past the cap, which are rare, so the common
// path allocates nothing but the kept bytes.
var discardBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (c *capture) Write(p []byte) (int, error) {
	n := min(len(p), c.max-len(c.buf))
	c.buf = append(c.buf, p[:n]...)
	c.dropped += int64(len(p) - n)
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
			if len(c.buf) == cap(c.buf) {
				c.buf = slices.Grow(c.buf, min(max(cap(c.buf), captureMinGrow), room))
			}
			n, err = r.Read(c.buf[len(c.buf):min(cap(c.buf), c.max)])
			c.buf = c.buf[:len(c.buf)+n]
		} else {
			scratch := discardBufs.Get().(*[32 << 10]byte)
			n, err = r.Read(scratch[:])
			discardBufs.Put(scratch)
			c.dropped += int64(n)
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
