package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseTimestamp reads until as Moby's daemon/internal/timestamp.Parse
// does, with its error texts: a Go duration before now, an RFC 3339 time or
// date (in now's zone when it has none), or Unix seconds with an optional
// fraction.
func parseTimestamp(value string, now time.Time) (time.Time, error) {
	if strings.TrimSpace(value) == "" {
		return time.Time{}, errors.New("failed to parse value as time or duration: value is empty")
	}
	if d, err := time.ParseDuration(value); value != "0" && err == nil {
		return now.Add(-d), nil
	}
	// A Z, a + or three dashes carry a zone.
	local := !strings.ContainsAny(value, "zZ+") && strings.Count(value, "-") != 3
	t, err := parseTime(value, local, now)
	if err == nil {
		return t, nil
	}
	if strings.Contains(value, "-") {
		// Meant as a time: the layout's error says what is wrong.
		return time.Time{}, err
	}
	if t, err = parseUnix(value); err != nil {
		return time.Time{}, fmt.Errorf("failed to parse value as time or duration: %w", err)
	}
	return t, nil
}

// parseTime reads value in the RFC 3339 layout its punctuation calls for.
func parseTime(value string, local bool, now time.Time) (time.Time, error) {
	var layout string
	switch {
	case strings.Contains(value, "."):
		layout = time.RFC3339Nano
		if local {
			layout = "2006-01-02T15:04:05.999999999"
		}
	case strings.Contains(value, "T"):
		colons := strings.Count(value, ":")
		if !local && !strings.ContainsAny(value, "zZ") && colons > 0 {
			colons-- // the zone's offset has one
		}
		layouts := []string{"2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", time.RFC3339}
		if local {
			layouts = []string{"2006-01-02T15", "2006-01-02T15:04", "2006-01-02T15:04:05"}
		}
		layout = layouts[min(colons, 2)]
	case local:
		layout = "2006-01-02"
	default:
		layout = "2006-01-02Z07:00"
	}
	if local {
		return time.ParseInLocation(layout, value, time.FixedZone(now.Zone()))
	}
	return time.Parse(layout, value)
}

// parseUnix reads "seconds[.nanoseconds]": up to 20 digits of fraction,
// cut to nanoseconds.
func parseUnix(value string) (time.Time, error) {
	s, frac, _ := strings.Cut(value, ".")
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var numErr *strconv.NumError
		if errors.As(err, &numErr) {
			err = numErr.Err
		}
		return time.Time{}, fmt.Errorf("invalid seconds %q: %w", s, err)
	}
	const maxFracDigits = 20
	if len(frac) > maxFracDigits {
		return time.Time{}, fmt.Errorf("invalid nanoseconds: length %d exceeds maximum %d", len(frac), maxFracDigits)
	}
	for i := range len(frac) {
		if c := frac[i]; c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("invalid nanoseconds: invalid character %q at position %d", c, i)
		}
	}
	frac = (frac + strings.Repeat("0", 9))[:9]
	nsec, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(sec, nsec), nil
}
