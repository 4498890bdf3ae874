package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelplane/modelplane/agent/agentproto"
)

// Heartbeat builds the current report.
func (a *Agent) Heartbeat() (agentproto.Heartbeat, error) {
	inv, err := a.Inventory()
	if err != nil {
		return agentproto.Heartbeat{}, err
	}
	return agentproto.Heartbeat{Name: a.cfg.Name, AgentID: a.agentID, AgentURL: a.cfg.AdvertiseURL, Inventory: inv, Replicas: a.views()}, nil
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		err := a.sendHeartbeat(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("heartbeat to the control plane failed", "api_url", a.cfg.APIURL, "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("heartbeat to the control plane works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) sendHeartbeat(ctx context.Context) error {
	hb, err := a.Heartbeat()
	if err != nil {
		return err
	}
	body, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(a.cfg.APIURL, "/")+agentproto.HeartbeatPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
