package main

import (
	"math"
	"testing"
	"time"
)

func TestHistogram_BucketsHoldTheirValuesWithinAFifthOfAPercent(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 511, 512, 513, 1000, 12345, 999_999, 1_000_000, 123_456_789, 1 << 38} {
		got := bucketValue(bucketOf(v))
		if diff := math.Abs(float64(got) - float64(v)); diff > float64(v)/512+1 {
			t.Errorf("value %d is counted as %d, want within 0.2%%", v, got)
		}
	}
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		b := bucketOf(v)
		if b != prev && b != prev+1 {
			t.Fatalf("value %d goes to bucket %d after bucket %d, want buckets in order without gaps", v, b, prev)
		}
		prev = b
	}
}

func TestHistogram_QuantilesOfUniformLatencies(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(tt.q)
		if math.Abs(float64(got-tt.want)) > float64(tt.want)/500 {
			t.Errorf("quantile(%v) = %s, want %s within 0.2%%", tt.q, got, tt.want)
		}
	}
	if h.count() != 10000 {
		t.Errorf("count = %d, want 10000", h.count())
	}
	h.add(time.Hour) // beyond the last bucket: counted there, not lost
	if got := h.quantile(1); got < 8*time.Minute {
		t.Errorf("quantile(1) after an hour-long latency = %s, want the last bucket (about 9 minutes)", got)
	}
}
