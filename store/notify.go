package store

import (
	"context"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// RoutesChannel is the channel on which every write that gateways must see is announced.
const RoutesChannel = "modelplane_routes"

// NotifyRoutes tells gateways that routing data changed. Inside a transaction the
// notification is delivered at commit, and not at all on rollback.
func NotifyRoutes(ctx context.Context, db sqlx.ExecerContext, payload string) error {
	return exec(ctx, db, false, `SELECT pg_notify($1, $2)`, RoutesChannel, payload)
}

// Listener receives PostgreSQL notifications on one channel and reconnects by itself.
//
// After a reconnect notifications sent while it was away are lost, so it delivers an empty
// payload on C: receivers must then reload everything, as they do on start.
type Listener struct {
	C  <-chan string
	pl *pq.Listener
}

// Listen subscribes to channel on the database at url. Reconnects wait between minWait and
// maxWait (doubling).
func Listen(url, channel string, minWait, maxWait time.Duration, log *slog.Logger) (*Listener, error) {
	pl := pq.NewListener(url, minWait, maxWait, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			log.Warn("notification listener disconnected", "channel", channel, "err", err)
		case pq.ListenerEventReconnected:
			log.Info("notification listener reconnected", "channel", channel)
		case pq.ListenerEventConnectionAttemptFailed:
			log.Warn("notification listener cannot connect", "channel", channel, "err", err)
		}
	})
	if err := pl.Listen(channel); err != nil {
		_ = pl.Close()
		return nil, err
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		ping := time.NewTicker(30 * time.Second)
		defer ping.Stop()
		for {
			select {
			case n, ok := <-pl.Notify:
				if !ok {
					return
				}
				if n == nil {
					// pq sends nil after a reconnect: anything may have been missed.
					out <- ""
					continue
				}
				out <- n.Extra
			case <-ping.C:
				// A ping notices a dead connection that would otherwise wait for TCP.
				_ = pl.Ping()
			}
		}
	}()
	return &Listener{C: out, pl: pl}, nil
}

// Close stops listening and closes C.
func (l *Listener) Close() error { return l.pl.Close() }
