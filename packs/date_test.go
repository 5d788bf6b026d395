package packs

import (
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	for _, tc := range []struct {
		date, timezone string
		want           string // the instant in UTC, RFC 3339; "" when an error is wanted
		errText        string
	}{
		{date: "2030-01-02T15:04:05Z", want: "2030-01-02T15:04:05Z"},
		{date: "2030-01-02T15:04:05+01:00", timezone: "UTC", want: "2030-01-02T14:04:05Z"},
		{date: "2030-01-02T15:04:05.25-05:00", timezone: "Etc/UTC", want: "2030-01-02T20:04:05.25Z"},
		{date: "2030-01-02T15:04:05", want: "2030-01-02T15:04:05Z"},
		{date: "2030-01-02 15:04:05", timezone: "UTC", want: "2030-01-02T15:04:05Z"},
		{date: "2030-01-02 15:04:05", timezone: "Europe/Paris", want: "2030-01-02T14:04:05Z"},
		{date: "2030-07-02T15:04:05.5", timezone: "America/New_York", want: "2030-07-02T19:04:05.5Z"},
		{date: "2030-10-27 03:30:00", timezone: "Europe/Paris", want: "2030-10-27T02:30:00Z"},
		{date: "2030-01-02T15:04:05+01:00", timezone: "Europe/Paris",
			errText: `date "2030-01-02T15:04:05+01:00" has an offset and timezone is Europe/Paris: give either, not both (drop the offset to read the date in Europe/Paris)`},
		{date: "2030-01-02T15:04:05Z", timezone: "Asia/Tokyo",
			errText: `date "2030-01-02T15:04:05Z" has an offset and timezone is Asia/Tokyo: give either, not both (drop the offset to read the date in Asia/Tokyo)`},
		{date: "2030-03-31 02:30:00", timezone: "Europe/Paris",
			errText: `date "2030-03-31 02:30:00" does not exist in Europe/Paris: daylight saving time skips it`},
		{date: "2030-10-27T02:30:00", timezone: "Europe/Paris",
			errText: `date "2030-10-27T02:30:00" happens twice in Europe/Paris, as daylight saving time ends: give an offset instead (2030-10-27T02:30:00+02:00 or 2030-10-27T02:30:00+01:00) with timezone UTC`},
		{date: "2030-01-02 15:04:05+01:00",
			errText: `date "2030-01-02 15:04:05+01:00" is neither RFC 3339 with an offset (2030-01-02T15:04:05Z) nor a date-time without one (2030-01-02T15:04:05 or 2030-01-02 15:04:05)`},
		{date: "2030-01-02",
			errText: `date "2030-01-02" is neither RFC 3339 with an offset (2030-01-02T15:04:05Z) nor a date-time without one (2030-01-02T15:04:05 or 2030-01-02 15:04:05)`},
		{date: "2030-01-02T15:04:05", timezone: "Mars/Olympus", errText: `timezone "Mars/Olympus": unknown time zone Mars/Olympus`},
	} {
		t.Run(tc.date+" in "+tc.timezone, func(t *testing.T) {
			got, err := ParseDate(tc.date, tc.timezone)
			if tc.errText != "" {
				if err == nil || err.Error() != tc.errText {
					t.Fatalf("got %s, %v; want error %q", got, err, tc.errText)
				}
				return
			}
			if err != nil || got.UTC().Format(time.RFC3339Nano) != tc.want {
				t.Fatalf("got %s, %v; want %s", got.UTC().Format(time.RFC3339Nano), err, tc.want)
			}
		})
	}
}
