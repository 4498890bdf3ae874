package gateway

import (
	"context"
	"sync"

	"github.com/modelplane/modelplane/store"
)

// maxAcceptBatch bounds the async requests recorded in one transaction, and acceptWriters the
// transactions one gateway has under way at once: while one waits for its commit, the next
// batch is written.
const (
	maxAcceptBatch = 256
	acceptWriters  = 2
)

// acceptBatcher records async requests in batches: one transaction, and so one commit, for
// every request that arrived while the last batch was being written. A lone request goes at
// once; under load the batches grow and the commits stay few.
type acceptBatcher struct {
	g     *Gateway
	once  sync.Once
	queue chan *pendingAccept
	// counts spares a batch far below its workspace's limit the count of its open requests.
	counts store.OpenAsyncCounts
}

// pendingAccept is a request waiting for its batch, and where its outcome goes.
type pendingAccept struct {
	req  store.NewAsyncRequest
	done chan acceptOutcome
}

type acceptOutcome struct {
	admission store.AsyncAdmission
	err       error
}

// record records req, or answers why not: store.ErrLimit in admission's empty ID, or the
// database's error. It waits for its batch's commit, or until ctx ends.
func (b *acceptBatcher) record(ctx context.Context, req store.NewAsyncRequest) (store.AsyncAdmission, error) {
	b.once.Do(func() {
		b.queue = make(chan *pendingAccept, acceptWriters*maxAcceptBatch)
		for range acceptWriters {
			go b.run()
		}
	})
	p := &pendingAccept{req: req, done: make(chan acceptOutcome, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return store.AsyncAdmission{}, ctx.Err()
	}
	select {
	case out := <-p.done:
		return out.admission, out.err
	case <-ctx.Done():
		// The batch may still commit: the request then exists, as when a client leaves
		// before reading its 201.
		return store.AsyncAdmission{}, ctx.Err()
	}
}

// run writes batches for as long as the gateway lives.
func (b *acceptBatcher) run() {
	batch := make([]*pendingAccept, 0, maxAcceptBatch)
	reqs := make([]store.NewAsyncRequest, 0, maxAcceptBatch)
	for p := range b.queue {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxAcceptBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		reqs = reqs[:0]
		for _, p := range batch {
			reqs = append(reqs, p.req)
		}
		ctx, cancel := context.WithTimeout(context.Background(), asyncDBTimeout)
		got, err := store.InsertAsyncRequests(ctx, b.g.opts.DB, reqs, b.g.opts.MaxOpenAsync, &b.counts)
		cancel()
		for i, p := range batch {
			out := acceptOutcome{err: err}
			if err == nil {
				out.admission = got[i]
			}
			p.done <- out
		}
	}
}
