package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPick_DistinctFreePortsBelowTheEphemeralRange(t *testing.T) {
	ps, err := Pick(20)
	require.NoError(t, err)
	require.Len(t, ps, 20)
	seen := map[int]bool{}
	for _, p := range ps {
		require.False(t, seen[p], "port %d drawn twice", p)
		seen[p] = true
		require.GreaterOrEqual(t, p, lowest)
		require.Less(t, p, ephemeralLow(), "port %d is in the ephemeral range, where outgoing connections take ports", p)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err, "port %d was handed out but cannot be bound", p)
		require.Error(t, Check(p), "Check must see a bound port as taken")
		require.NoError(t, l.Close())
	}
}
