package client

import (
	"context"
	"fmt"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
)

// DeploymentFailedError is what WaitActive returns when the deployment reached a status that
// waiting cannot get past (modelplane.DeploymentStatus.Stuck) instead of ACTIVE.
type DeploymentFailedError struct {
	Deployment apiv1.DeploymentV1
}

func (e *DeploymentFailedError) Error() string {
	msg := fmt.Sprintf("deployment %s (%s) is %s", e.Deployment.Name, e.Deployment.ID, e.Deployment.Status)
	if r := e.Deployment.StatusReason; r != nil && *r != "" {
		msg += ": " + *r
	}
	return msg
}

// PromotionFailedError is what WaitPromoted returns when the promotion ended without the
// deployment serving the environment.
type PromotionFailedError struct {
	Environment string
	Promotion   apiv1.PromotionV1
}

func (e *PromotionFailedError) Error() string {
	msg := fmt.Sprintf("promotion to %s %s", e.Environment, e.Promotion.Status)
	if e.Promotion.ErrorMessage != "" {
		msg += ": " + e.Promotion.ErrorMessage
	}
	return msg
}

// WaitActive polls a deployment every interval until it is ACTIVE, reaches a status it does
// not leave by itself (a *DeploymentFailedError) or ctx ends. progress, when not nil, sees every
// answer, so that a caller can show the stages as they pass.
func (c *Client) WaitActive(ctx context.Context, modelID, deploymentID string, interval time.Duration,
	progress func(apiv1.DeploymentV1)) (apiv1.DeploymentV1, error) {
	for {
		d, err := c.Deployment(ctx, modelID, deploymentID)
		if err != nil {
			return d, err
		}
		if progress != nil {
			progress(d)
		}
		switch {
		case d.Status == modelplane.DeploymentActive:
			return d, nil
		case d.Status.Stuck():
			return d, &DeploymentFailedError{Deployment: d}
		}
		if err := sleep(ctx, interval); err != nil {
			return d, fmt.Errorf("deployment %s is still %s: %w", d.ID, d.Status, err)
		}
	}
}

// WaitPromoted polls an environment every interval until deploymentID is its current
// deployment with no promotion in flight, the promotion fails or is canceled (a
// *PromotionFailedError), or ctx ends. progress sees every answer.
func (c *Client) WaitPromoted(ctx context.Context, modelID, env, deploymentID string, interval time.Duration,
	progress func(apiv1.EnvironmentV1)) (apiv1.EnvironmentV1, error) {
	for {
		e, err := c.Environment(ctx, modelID, env)
		if err != nil {
			return e, err
		}
		if progress != nil {
			progress(e)
		}
		p := e.InProgressPromotion
		switch {
		case p == nil && e.CurrentDeployment != nil && e.CurrentDeployment.ID == deploymentID:
			return e, nil
		case p != nil && (p.Status == modelplane.PromotionFailed || p.Status == modelplane.PromotionCanceled):
			return e, &PromotionFailedError{Environment: env, Promotion: *p}
		}
		if err := sleep(ctx, interval); err != nil {
			return e, fmt.Errorf("deployment %s does not serve %s yet: %w", deploymentID, env, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
