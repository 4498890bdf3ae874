package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/store"
)

func point(config string, files map[string]string) patch.Point {
	p := patch.Point{ContentHashes: map[string]*string{"model": nil}, Config: config}
	for path, content := range files {
		h := patch.SumHex([]byte(content))
		p.ContentHashes[path] = &h
	}
	return p
}

func TestPatches_OnlyOneOfTwoPatchesAgainstTheSameHeadIsStaged(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)
	base := point("model_name: m\n", map[string]string{"model/model.py": "a"})
	s, err := store.EnsurePatchState(ctx, db, d.ID, base)
	require.NoError(t, err)
	require.Equal(t, base.Hash(), s.HeadHash)
	again, err := store.EnsurePatchState(ctx, db, d.ID, point("model_name: other\n", nil))
	require.NoError(t, err)
	require.Equal(t, base.Hash(), again.BaseHash, "the state is made once, from the first point")

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := point("model_name: m\n", map[string]string{"model/model.py": string(rune('b' + i))})
			_, errs[i] = store.StagePatch(ctx, db, d.ID, base.Hash(), next, []patch.Op{{Type: patch.TypeModelCode}})
		}()
	}
	wg.Wait()
	staged := 0
	for _, err := range errs {
		switch {
		case err == nil:
			staged++
		case !errors.Is(err, store.ErrStalePatch):
			t.Fatalf("a losing patch must be ErrStalePatch, got %v", err)
		}
	}
	require.Equal(t, 1, staged, "exactly one patch against the same head is staged")

	s, err = store.PatchStateOf(ctx, db, d.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.HeadSeq)
	require.EqualValues(t, 0, s.AppliedSeq)
	seq, ok, err := store.PatchSeqOf(ctx, db, s, s.HeadHash)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 1, seq)
	seq, ok, err = store.PatchSeqOf(ctx, db, s, "")
	require.NoError(t, err)
	require.True(t, ok, "a replica without a patch runs the base")
	require.EqualValues(t, 0, seq)
	_, ok, err = store.PatchSeqOf(ctx, db, s, "nope")
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, store.MarkPatchesApplied(ctx, db, d.ID, 1, s.HeadHash))
	require.NoError(t, store.MarkPatchesApplied(ctx, db, d.ID, 0, base.Hash()), "never backwards, and not an error")
	s, err = store.PatchStateOf(ctx, db, d.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.AppliedSeq)
	require.Equal(t, s.HeadHash, s.AppliedHash)
	ps, err := store.PatchesBetween(ctx, db, d.ID, 0, 1)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	cfg, err := store.ConfigAt(ctx, db, s, 1)
	require.NoError(t, err)
	require.Equal(t, "model_name: m\n", cfg)
}
