package apikey_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apikey"
)

func TestParse(t *testing.T) {
	valid := "mp_abcdefghij12_" + strings.Repeat("z9", 16)
	tests := []struct {
		name, key string
		wantErr   bool
	}{
		{"valid", valid, false},
		{"empty", "", true},
		{"no prefix", strings.TrimPrefix(valid, "mp_"), true},
		{"short secret", valid[:len(valid)-1], true},
		{"upper case", strings.ToUpper(valid), true},
		{"trailing space", valid + " ", true},
		{"extra part", valid + "_x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, secret, err := apikey.Parse(tt.key)
			if tt.wantErr {
				require.ErrorIs(t, err, apikey.ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "abcdefghij12", id)
			require.Equal(t, strings.Repeat("z9", 16), secret)
		})
	}
}

func TestMatches(t *testing.T) {
	stored := apikey.Hash("secret-a")
	require.True(t, apikey.Matches(stored, "secret-a"))
	require.False(t, apikey.Matches(stored, "secret-b"))
	require.Len(t, stored, 32, "SHA-256 is 32 bytes")
}
