package workflows

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/settings"
)

// Every step keeps both deployments' replicas within n + surge and the ready ones at
// n - unavailable at least, and the last step leaves the candidate with all n.
func TestRollingSteps_StayWithinSurgeAndUnavailable(t *testing.T) {
	for n := 1; n <= 9; n++ {
		for _, pct := range [][2]int{{25, 0}, {0, 25}, {0, 0}, {50, 50}, {100, 0}, {0, 100}, {10, 10}, {34, 0}} {
			t.Run(fmt.Sprintf("n%d/surge%d/unavailable%d", n, pct[0], pct[1]), func(t *testing.T) {
				c := settings.RollingDeployConfig{MaxSurgePercent: pct[0], MaxUnavailablePercent: pct[1]}
				surge, unavailable := (n*pct[0]+99)/100, n*pct[1]/100
				if surge+unavailable == 0 {
					surge = 1
				}
				steps := rollingSteps(n, c)
				require.NotEmpty(t, steps)
				ready := 0 // the candidate's ready replicas before the step
				previous := n
				for _, s := range steps {
					require.LessOrEqual(t, s.previousBefore, previous, "the previous deployment never grows")
					previous = s.previousBefore
					require.GreaterOrEqual(t, previous+ready, n-unavailable, "ready replicas while the candidate's start: %+v", s)
					require.LessOrEqual(t, previous+s.candidate, n+surge, "replicas at the step's peak: %+v", s)
					require.Greater(t, s.candidate, ready, "every step adds candidate replicas")
					ready = s.candidate
					require.Equal(t, n-ready, s.previousAfter)
					previous = s.previousAfter
				}
				require.Equal(t, n, ready)
				require.Zero(t, previous)
			})
		}
	}
}

func TestRollingSteps_DefaultsAddAQuarterAtATime(t *testing.T) {
	require.Equal(t, []rollingStep{{4, 1, 3}, {3, 2, 2}, {2, 3, 1}, {1, 4, 0}},
		rollingSteps(4, settings.DefaultRollingDeployConfig()))
	// No room for even one more replica: the previous deployment gives up half first.
	require.Equal(t, []rollingStep{{2, 2, 2}, {0, 4, 0}},
		rollingSteps(4, settings.RollingDeployConfig{MaxUnavailablePercent: 50}))
}
