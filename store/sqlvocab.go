package store

import (
	"slices"
	"strings"

	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
)

// The vocabulary as SQL literals, for queries that compare a column with a status or a
// set of them: each is spelt where the vocabulary defines it, never typed out in a query.
var (
	sqlAsyncCanceled               = sqlText(modelplane.AsyncCanceled)
	sqlAsyncExpired                = sqlText(modelplane.AsyncExpired)
	sqlAsyncInProgress             = sqlText(modelplane.AsyncInProgress)
	sqlAsyncQueued                 = sqlText(modelplane.AsyncQueued)
	sqlAsyncSucceeded              = sqlText(modelplane.AsyncSucceeded)
	sqlAsyncWebhookFailed          = sqlText(modelplane.AsyncWebhookFailed)
	sqlAttemptDone                 = sqlText(modelplane.AttemptDone)
	sqlAttemptPending              = sqlText(modelplane.AttemptPending)
	sqlAttemptRunning              = sqlText(modelplane.AttemptRunning)
	sqlCodeGatewayLost             = sqlText(modelplane.CodeGatewayLost)
	sqlDeploymentInactive          = sqlText(modelplane.DeploymentInactive)
	sqlDeploymentScaledToZero      = sqlText(modelplane.DeploymentScaledToZero)
	sqlNodeDown                    = sqlText(modelplane.NodeDown)
	sqlNodeDraining                = sqlText(modelplane.NodeDraining)
	sqlNodeReady                   = sqlText(modelplane.NodeReady)
	sqlPromotionReleasing          = sqlText(modelplane.PromotionReleasing)
	sqlReplicaDraining             = sqlText(modelplane.ReplicaDraining)
	sqlReplicaReady                = sqlText(modelplane.ReplicaReady)
	sqlWebhookCanceled             = sqlText(modelplane.WebhookCanceled)
	sqlWebhookFailed               = sqlText(modelplane.WebhookFailed)
	sqlWebhookPending              = sqlText(modelplane.WebhookPending)
	sqlWebhookSucceeded            = sqlText(modelplane.WebhookSucceeded)
	sqlEndedReplicaStates          = sqlList(modelplane.EndedReplicaStates()...)
	sqlInProgressPromotionStatuses = sqlList(modelplane.InProgressPromotionStatuses()...)
	sqlLiveReplicaStates           = sqlList(modelplane.LiveReplicaStates()...)
	sqlOpenAsyncStatuses           = sqlList(modelplane.OpenAsyncStatuses()...)
	sqlSplittingPromotionStatuses  = sqlList(modelplane.SplittingPromotionStatuses()...)
	sqlStartingReplicaStates       = sqlList(modelplane.StartingReplicaStates()...)
	// sqlAutoscaledAwakeStatuses are the autoscaled statuses but SCALED_TO_ZERO.
	sqlAutoscaledAwakeStatuses = sqlList(slices.DeleteFunc(modelplane.AutoscaledDeploymentStatuses(),
		func(s modelplane.DeploymentStatus) bool { return s == modelplane.DeploymentScaledToZero })...)
)

// sqlText is v as an SQL string literal.
func sqlText[T ~string](v T) string { return "'" + strings.ReplaceAll(string(v), "'", "''") + "'" }

// sqlArray is values as a query argument for = ANY($n).
func sqlArray[T ~string](values []T) any {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return pq.Array(s)
}

// sqlList is values as a parenthesised SQL list of string literals, for IN.
func sqlList[T ~string](values ...T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = sqlText(v)
	}
	return "(" + strings.Join(s, ", ") + ")"
}
