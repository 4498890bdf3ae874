package nvml

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHealthBook_ProbationRunsFromTheFirstCleanCheck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newHealthBook(5 * time.Minute)

	healthy, _ := b.verdict("g", t0)
	assert.True(t, healthy, "a GPU never seen failing is healthy")

	assert.True(t, b.fail("g", "XID 79"), "first failure is a transition")
	assert.False(t, b.fail("g", "XID 79"), "a second failure is not")

	// Time passing without a clean check does not count towards probation.
	healthy, reason := b.verdict("g", t0.Add(time.Hour))
	assert.False(t, healthy)
	assert.Equal(t, "XID 79", reason)

	start := t0.Add(time.Hour)
	assert.False(t, b.pass("g", start))
	healthy, reason = b.verdict("g", start.Add(2*time.Minute))
	assert.False(t, healthy)
	assert.Equal(t, "XID 79; on probation, checks passing for 2m0s of 5m0s", reason)

	// A failure during probation starts it over.
	b.fail("g", "uncorrected ECC")
	assert.False(t, b.pass("g", start.Add(3*time.Minute)))
	healthy, _ = b.verdict("g", start.Add(7*time.Minute))
	assert.False(t, healthy, "only 4 of 5 minutes clean since the second failure")

	healthy, _ = b.verdict("g", start.Add(8*time.Minute))
	assert.True(t, healthy, "5 clean minutes end probation even before the next check")
	assert.True(t, b.pass("g", start.Add(8*time.Minute)), "the next pass records the recovery")
	assert.False(t, b.pass("g", start.Add(9*time.Minute)), "and only once")
}
