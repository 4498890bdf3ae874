package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelplane/modelplane/autoscaler"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
)

// runChild runs one component on the database until SIGTERM, printing "ready" once it is up.
func runChild(component, dbURL string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ready func() bool
	done := make(chan error, 1)
	switch component {
	case "gateway":
		gw, err := gateway.New(gateway.Options{DB: db, DatabaseURL: dbURL, Logger: log})
		if err != nil {
			return err
		}
		go func() { done <- gw.Run(ctx) }()
		ready = gw.Ready
	case "autoscaler":
		// No Temporal: the fleet is at its desired counts, so an idle loop sends nothing.
		loop := autoscaler.New(autoscaler.Options{DB: db, Logger: log})
		go func() { done <- loop.Run(ctx) }()
		ready = loop.IsLeader
	default:
		return fmt.Errorf("unknown component %q", component)
	}
	for start := time.Now(); !ready(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			return fmt.Errorf("%s never came up", component)
		}
	}
	fmt.Println("ready")
	return <-done
}
