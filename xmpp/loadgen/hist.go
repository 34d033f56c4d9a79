package loadgen

import (
	"math/bits"
	"time"
)

// Hist is a latency histogram with about 1% resolution from 1 µs to
// hours (log-linear buckets, 128 sub-buckets per power of two), so a
// percentile costs no sorting and a sample costs no allocation. Not safe
// for concurrent use; merge per-goroutine histograms.
type Hist struct {
	counts [64 * subBuckets]uint32
	n      uint64
	max    int64
}

const subBits = 7
const subBuckets = 1 << subBits

func bucketOf(us int64) int {
	if us < subBuckets {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	e := bits.Len64(uint64(us)) - subBits // ≥ 1
	return e*subBuckets + int(uint64(us)>>(e-1)) - subBuckets
}

// lowerOf is the smallest value in bucket i (µs).
func lowerOf(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	e := i / subBuckets
	m := int64(i%subBuckets + subBuckets)
	return m << (e - 1)
}

// Record adds one sample.
func (h *Hist) Record(d time.Duration) {
	us := d.Microseconds()
	b := bucketOf(us)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b]++
	h.n++
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's samples.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest sample.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) * time.Microsecond }

// Quantile returns the value at quantile q (0..1): the upper edge of the
// bucket holding it, capped at the maximum, so it never understates.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			up := lowerOf(i+1) - 1
			if up > h.max {
				up = h.max
			}
			return time.Duration(up) * time.Microsecond
		}
	}
	return h.Max()
}

// Reset clears the histogram.
func (h *Hist) Reset() { *h = Hist{} }
