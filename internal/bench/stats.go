// Package bench measures hostnet against baselines run in the same
// invocation, in throwaway network namespaces, and prints each figure beside
// its baseline as a ratio.
package bench

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Series is a sequence of timings in the order they were taken.
type Series []time.Duration

// Quantile returns the q-quantile (0..1) of s, nearest rank.
func (s Series) Quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(Series(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(0, min(i, len(c)-1))]
}

// Median is the 0.5 quantile.
func (s Series) Median() time.Duration { return s.Quantile(0.5) }

// Window returns the timings from index from (inclusive) to to (exclusive),
// clamped to s.
func (s Series) Window(from, to int) Series {
	if from < 0 {
		from = 0
	}
	if to > len(s) {
		to = len(s)
	}
	if from >= to {
		return nil
	}
	return s[from:to]
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// ratio formats a/b.
func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	r := float64(a) / float64(b)
	if r < 0.1 {
		return fmt.Sprintf("%.4fx", r)
	}
	return fmt.Sprintf("%.2fx", r)
}
