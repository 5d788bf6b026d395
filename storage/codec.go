package storage

import (
	"encoding/json"
	"fmt"
)

// The codec is the one place that knows how records become bytes, so that
// JSON can later give way to protobuf without touching anything else.

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// decode copies everything it keeps out of b, so b may be a Pebble buffer
// that is reused once the iterator moves or the Get closer is closed.
func decode[T any](b []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	return v, nil
}
