package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Age is a duration that may also be given in days ("30d"), for limits
// that operators think of in days.
type Age time.Duration

// UnmarshalText accepts "30d" as well as anything time.ParseDuration does.
func (a *Age) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a number of days", s)
		}
		*a = Age(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*a = Age(d)
	return nil
}

// MarshalText writes whole days as "Nd", so check-config prints what an
// operator wrote.
func (a Age) MarshalText() ([]byte, error) {
	d := time.Duration(a)
	if d != 0 && d%(24*time.Hour) == 0 {
		return []byte(strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"), nil
	}
	return []byte(d.String()), nil
}
