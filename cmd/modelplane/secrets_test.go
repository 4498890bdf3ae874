package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

func TestSecretsCmd_SetReadsStdinListShowsNamesDeleteRemoves(t *testing.T) {
	db, url := apitest.Serve(t, dbURL)
	m, _, key := apitest.AdminWorkspace(t, db, "cli")
	const value = "cli-value-8d2f"
	flags := []string{"--url", url, "--api-key", key}

	cmd := modelplaneCmd(append([]string{"secrets", "set", "hf_token"}, flags...)...)
	cmd.Stdin = strings.NewReader(value + "\n")
	r := runCmd(t, cmd)
	require.Zero(t, r.exit, "stderr: %s", r.stderr)
	require.Contains(t, r.stdout, "secret hf_token set")
	require.NotContains(t, r.stdout+r.stderr, value)
	sealed, err := store.SealedSecrets(context.Background(), db, m.WorkspaceID, []string{"hf_token"})
	require.NoError(t, err)
	require.Len(t, sealed, 1, "the secret is stored")

	r = runClient(t, "", nil, append([]string{"secrets", "list"}, flags...)...)
	require.Zero(t, r.exit, "stderr: %s", r.stderr)
	rows := table(r.stdout)
	require.Len(t, rows, 2, "%s", r.stdout)
	require.Equal(t, []string{"NAME", "ID", "CREATED"}, rows[0])
	require.Equal(t, "hf_token", rows[1][0])
	require.NotContains(t, r.stdout, value)

	r = runClient(t, "", nil, append([]string{"secrets", "delete", "hf_token"}, flags...)...)
	require.Zero(t, r.exit, "stderr: %s", r.stderr)
	r = runClient(t, "", nil, append([]string{"secrets", "delete", "hf_token"}, flags...)...)
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, `secret "hf_token" not found`)

	// Nothing on stdin: refused before anything is sent.
	r = runClient(t, "", nil, append([]string{"secrets", "set", "hf_token"}, flags...)...)
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "no value on stdin")
}
