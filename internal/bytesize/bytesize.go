// Package bytesize reads and writes amounts of bytes the way operators type
// them in settings and read them in messages: 512MiB, 1GiB, 10GB. It only
// converts; what a size limits is the business of its user.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is an amount of bytes.
type Size int64

// units are the suffixes Parse accepts, lower-cased: binary multiples with
// their IEC names (and Kubernetes' Ki, Mi, …), decimal ones with their SI
// names, because both reach operators from other tools.
var units = map[string]float64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60,
	"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40, "pi": 1 << 50, "ei": 1 << 60,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
}

// binary are the units String writes, largest first.
var binary = []struct {
	name string
	size Size
}{{"EiB", 1 << 60}, {"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// Parse reads a number of bytes with an optional unit, case-insensitively:
// "1073741824", "1GiB", "1.5 GiB", "512Mi", "10GB". A fraction is rounded
// to the nearest byte.
func Parse(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	n, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size like 512MiB, 1GiB or 1073741824", s)
	}
	b := math.Round(n * mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is more than 8EiB", s)
	}
	return Size(b), nil
}

// String writes s in the largest binary unit it reaches: exactly when it is
// a whole number of that unit (so that Parse reads it back), else to one
// decimal ("70.3GiB"). Below 1KiB, and when negative, it writes bytes.
func (s Size) String() string {
	for _, u := range binary {
		if s >= u.size {
			if s%u.size == 0 {
				return strconv.FormatInt(int64(s/u.size), 10) + u.name
			}
			return strconv.FormatFloat(float64(s)/float64(u.size), 'f', 1, 64) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}
