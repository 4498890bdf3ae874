package api

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/store"
)

func TestToError_ContentTheDatabaseCannotStoreIs400(t *testing.T) {
	err := fmt.Errorf("creating model: %w", &store.Error{Kind: store.ErrUnstorable,
		Detail: `invalid byte sequence for encoding "UTF8": 0x00`})
	e, internal := toError(err)
	require.False(t, internal)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.Contains(t, e.Message, "invalid byte sequence")
}
