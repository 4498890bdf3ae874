// Command nvmlprobe prints the GPU inventory that modelplane's nvml package sees, as JSON,
// so that a real host can be compared with the recorded fixtures:
//
//	nvmlprobe                  # real NVML
//	nvmlprobe -profile h200    # the simulated H200, replaying testdata/h200-probe.json
//	nvmlprobe -health 30s      # run the health loop for 30 s first, then print
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/modelplane/modelplane/nvml"
)

func main() {
	profile := flag.String("profile", nvml.ProfileReal, "GPU profile: real, auto, none, h200 or dgxa100")
	health := flag.Duration("health", 0, "run the health loop (event set and polling) this long before printing")
	poll := flag.Duration("poll", time.Second, "health poll interval while -health runs")
	flag.Parse()
	// Logs go to stderr so that stdout stays valid JSON.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := run(*profile, *health, *poll, log); err != nil {
		fmt.Fprintln(os.Stderr, "nvmlprobe:", err)
		os.Exit(1)
	}
}

func run(profile string, health, poll time.Duration, log *slog.Logger) error {
	m, err := nvml.Open(profile, nvml.Options{Logger: log, PollInterval: poll})
	if err != nil {
		return err
	}
	defer m.Close()
	if health > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), health)
		defer cancel()
		start := time.Now()
		if err := m.Run(ctx); err != nil {
			return err
		}
		log.Info("health loop stopped", "ran", time.Since(start).Round(time.Millisecond).String())
	}
	inv, err := m.Inventory()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Profile string `json:"profile"`
		nvml.Inventory
	}{m.Profile(), inv})
}
