package packs

import (
	"fmt"
	"slices"
	"time"
)

// localLayouts are the forms of a core.datetimer date without an offset.
// Parsing accepts fractional seconds after the seconds of either.
var localLayouts = []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05"}

// utcZones are the timezone values under which a date's own offset is
// unambiguous: the trigger's default, and no timezone at all.
var utcZones = []string{"", "UTC", "Etc/UTC"}

// ParseDate reads the date parameter of a core.datetimer trigger. It is
// either RFC 3339 with an offset ("2030-01-02T15:04:05Z",
// "2030-01-02T15:04:05+01:00"), or a wall-clock time without one
// ("2030-01-02T15:04:05" or "2030-01-02 15:04:05") read in timezone, an IANA
// zone name where "" means UTC. It is an error for a date with an offset to
// come with a timezone other than UTC (which of the two is meant?), and for
// a wall-clock time that timezone skips or repeats at a daylight-saving
// change (every node must fire the timer at the same instant).
//
// The loader checks rules with it and the timer schedules with it, so a date
// that loads is a date that fires.
func ParseDate(date, timezone string) (time.Time, error) {
	loc, err := time.LoadLocation(timezone)
	if err != nil {
		return time.Time{}, fmt.Errorf("timezone %q: %w", timezone, err)
	}
	if t, err := time.Parse(time.RFC3339, date); err == nil {
		if !slices.Contains(utcZones, timezone) {
			return time.Time{}, fmt.Errorf("date %q has an offset and timezone is %s: give either, not both (drop the offset to read the date in %s)", date, timezone, timezone)
		}
		return t, nil
	}
	for _, layout := range localLayouts {
		if wall, err := time.Parse(layout, date); err == nil {
			return inZone(date, wall, loc)
		}
	}
	return time.Time{}, fmt.Errorf("date %q is neither RFC 3339 with an offset (2030-01-02T15:04:05Z) nor a date-time without one (2030-01-02T15:04:05 or 2030-01-02 15:04:05)", date)
}

// inZone is the instant at which loc's clocks show wall (parsed as UTC). Go
// quietly picks an instant for a wall time that loc skips or shows twice;
// this refuses both instead.
func inZone(date string, wall time.Time, loc *time.Location) (time.Time, error) {
	y, mo, d := wall.Date()
	h, mi, s := wall.Clock()
	t := time.Date(y, mo, d, h, mi, s, wall.Nanosecond(), loc)
	shows := func(u time.Time) bool {
		u = u.In(loc)
		y, mo, d := u.Date()
		h, mi, s := u.Clock()
		return time.Date(y, mo, d, h, mi, s, u.Nanosecond(), time.UTC).Equal(wall)
	}
	if !shows(t) {
		return time.Time{}, fmt.Errorf("date %q does not exist in %s: daylight saving time skips it", date, loc)
	}
	// A repeated wall time is also wall minus the offset in force on the
	// other side of the change; zones change offset at most once a day.
	for _, near := range []time.Time{t.Add(-24 * time.Hour), t.Add(24 * time.Hour)} {
		_, off := near.In(loc).Zone()
		if u := wall.Add(-time.Duration(off) * time.Second); !u.Equal(t) && shows(u) {
			first, second := u, t
			if second.Before(first) {
				first, second = second, first
			}
			return time.Time{}, fmt.Errorf("date %q happens twice in %s, as daylight saving time ends: give an offset instead (%s or %s) with timezone UTC",
				date, loc, first.In(loc).Format(time.RFC3339), second.In(loc).Format(time.RFC3339))
		}
	}
	return t, nil
}
