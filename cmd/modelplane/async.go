package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/webhook"
)

// Ranges of the async options, as the gateway checks them (API.md), checked here too so that
// a typo is explained before anything is queued.
const (
	minPriority           = 0
	maxPriority           = 2
	minMaxTimeInQueueSecs = 10
	maxMaxTimeInQueueSecs = 259200 // three days
)

// asyncFlags are predict's flags for queuing a request instead of waiting for the answer.
type asyncFlags struct {
	Async          bool
	Webhook        string
	Priority       int
	MaxTimeInQueue int
}

func addAsyncFlags(cmd *cobra.Command, af *asyncFlags) {
	f := cmd.Flags()
	f.BoolVar(&af.Async, "async", false, "queue the request and print its request ID instead of waiting for the answer (see modelplane async-request)")
	f.StringVar(&af.Webhook, "webhook", "", "with --async: post the result to this URL, signed with the workspace's webhook secret (see modelplane webhook-secret)")
	f.IntVar(&af.Priority, "priority", 1, "with --async: queue priority, 0 (first) to 2 (last)")
	f.IntVar(&af.MaxTimeInQueue, "max-time-in-queue", 600, "with --async: seconds the request may wait for a replica before it expires (10-259200)")
}

// request checks the async flags and returns the body of the async predict; changed
// reports whether a flag was given, so that only given options are sent.
func (af asyncFlags) request(changed func(name string) bool, stream bool, input []byte) (client.AsyncPredictRequest, error) {
	var req client.AsyncPredictRequest
	if !af.Async {
		for _, name := range []string{"webhook", "priority", "max-time-in-queue"} {
			if changed(name) {
				return req, fmt.Errorf("--%s needs --async", name)
			}
		}
		return req, nil
	}
	if stream {
		return req, errors.New("--stream and --async cannot go together: an async request's answer is fetched later")
	}
	req.ModelInput = input
	if changed("webhook") {
		u := strings.TrimSpace(af.Webhook)
		if u == "" {
			return req, errors.New("--webhook needs a URL")
		}
		// Private addresses are the gateway's to allow; the form is checked here.
		if err := webhook.CheckURL(u, true); err != nil {
			return req, fmt.Errorf("--webhook %q: %w", af.Webhook, err)
		}
		req.WebhookEndpoint = u
	}
	if changed("priority") {
		if af.Priority < minPriority || af.Priority > maxPriority {
			return req, fmt.Errorf("--priority %d: use %d (first) to %d (last)", af.Priority, minPriority, maxPriority)
		}
		p := af.Priority
		req.Priority = &p
	}
	if changed("max-time-in-queue") {
		if af.MaxTimeInQueue < minMaxTimeInQueueSecs || af.MaxTimeInQueue > maxMaxTimeInQueueSecs {
			return req, fmt.Errorf("--max-time-in-queue %d: use %d to %d seconds", af.MaxTimeInQueue, minMaxTimeInQueueSecs, maxMaxTimeInQueueSecs)
		}
		s := af.MaxTimeInQueue
		req.MaxTimeInQueueSeconds = &s
	}
	return req, nil
}

// asyncPredict queues the request and prints its ID, or {"request_id"} with --output json.
func asyncPredict(ctx context.Context, out io.Writer, c *client.Client, gatewayURL, model string,
	t client.Target, req client.AsyncPredictRequest, output string) error {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	id, err := withModelID(ctx, c, model, func(modelID string) (string, error) {
		return c.Gateway(gatewayURL).AsyncPredict(ctx, modelID, t, req)
	})
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(out, map[string]string{"request_id": id})
	}
	_, err = fmt.Fprintln(out, id)
	return err
}

// withModelID calls fn with the model's ID and returns what it returns. As for predict, an
// argument shaped like an ID goes to the gateway as is, and is looked up as a name only when
// the gateway does not know it; any other argument is looked up first.
func withModelID[T any](ctx context.Context, c *client.Client, model string, fn func(modelID string) (T, error)) (T, error) {
	if !modelIDPattern.MatchString(model) {
		id, err := resolveModel(ctx, c, model)
		if err != nil {
			var zero T
			return zero, err
		}
		return fn(id)
	}
	v, err := fn(model)
	if client.IsStatus(err, http.StatusNotFound) {
		// A lookup that fails leaves the gateway's 404, which says more than the lookup's error.
		if id, lookupErr := resolveModel(ctx, c, model); lookupErr == nil && id != model {
			return fn(id)
		}
	}
	return v, err
}

// gatewayFlag registers --gateway-url, as predict has it.
func gatewayFlag(cmd *cobra.Command, gatewayURL *string) {
	cmd.Flags().StringVar(gatewayURL, "gateway-url", envString(envGatewayURL, ""), "the inference gateway ("+envGatewayURL+"; default: the API URL)")
}

// checkGatewayURL returns the trimmed gateway address, or an error naming the flag and the
// variable it came from.
func checkGatewayURL(raw string) (string, error) {
	gateway := strings.TrimSpace(raw)
	if gateway == "" {
		return "", nil
	}
	if u, err := url.Parse(gateway); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("gateway URL %q: use http://host:port or https://host (--gateway-url, %s)", gateway, envGatewayURL)
	}
	return gateway, nil
}

// gatewayClient checks the gateway address (rawGateway, from --gateway-url) and makes the
// client of the commands that talk to the gateway.
func gatewayClient(cfg clientConfig, rawGateway string) (c *client.Client, gateway string, err error) {
	if gateway, err = checkGatewayURL(rawGateway); err != nil {
		return nil, "", err
	}
	if c, err = cfg.client(); err != nil {
		return nil, "", err
	}
	return c, gateway, nil
}

func newAsyncRequestCmd() *cobra.Command {
	var cfg clientConfig
	var gatewayURL string
	var cancelIt bool
	cmd := &cobra.Command{
		Use:   "async-request REQUEST_ID",
		Short: "Show an async request's status, errors and output, or cancel it while it is queued",
		Long: "Show an async request (made with predict --async): its status, the errors of its attempts and,\n" +
			"while the gateway keeps it, the model's output. With --cancel, cancel it if it is still queued;\n" +
			"the command fails when it was not canceled (it already runs or ended).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, gateway, err := gatewayClient(cfg, gatewayURL)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			out := cmd.OutOrStdout()
			gw := c.Gateway(gateway)
			if cancelIt {
				res, err := gw.CancelAsyncRequest(ctx, args[0])
				if err != nil {
					return explainPredict(cfg, gateway, err)
				}
				return printCancel(out, res, cfg.Output)
			}
			st, err := gw.AsyncRequest(ctx, args[0])
			if err != nil {
				return explainPredict(cfg, gateway, err)
			}
			if cfg.Output == "json" {
				return printJSON(out, st)
			}
			return printAsyncStatus(out, st)
		},
	}
	cmd.Flags().BoolVar(&cancelIt, "cancel", false, "cancel the request if it is still queued")
	gatewayFlag(cmd, &gatewayURL)
	addClientFlags(cmd, &cfg)
	return cmd
}

// printCancel prints the outcome of a cancel; a request that was not canceled is an error,
// so that scripts see it in the exit code.
func printCancel(out io.Writer, res client.AsyncCancelResult, output string) error {
	if output == "json" {
		if err := printJSON(out, res); err != nil {
			return err
		}
	} else if res.Canceled {
		if _, err := fmt.Fprintf(out, "canceled %s\n", res.RequestID); err != nil {
			return err
		}
	}
	if !res.Canceled {
		msg := strings.TrimSpace(res.Message)
		if msg == "" {
			msg = "the gateway gave no reason"
		}
		return fmt.Errorf("request %s was not canceled: %s", res.RequestID, msg)
	}
	return nil
}

// printAsyncStatus prints one request as "field: value" lines.
func printAsyncStatus(out io.Writer, st client.AsyncRequestStatus) error {
	tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
	deployment := st.DeploymentID
	if st.Environment != "" {
		deployment += " (" + st.Environment + ")"
	}
	fmt.Fprintf(tw, "Request:\t%s\n", st.RequestID)
	fmt.Fprintf(tw, "Model:\t%s\n", st.ModelID)
	fmt.Fprintf(tw, "Deployment:\t%s\n", deployment)
	fmt.Fprintf(tw, "Status:\t%s\n", st.Status)
	fmt.Fprintf(tw, "Webhook:\t%s\n", st.WebhookStatus)
	fmt.Fprintf(tw, "Created:\t%s\n", st.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Status since:\t%s\n", st.StatusAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Attempts:\t%d\n", st.Attempts)
	for _, e := range st.Errors {
		where := ""
		if e.Attempt > 0 {
			where = fmt.Sprintf("attempt %d: ", e.Attempt)
		}
		fmt.Fprintf(tw, "Error:\t%s%s: %s\n", where, e.Code, oneLine(e.Message))
	}
	if len(st.Output) > 0 && string(st.Output) != "null" {
		fmt.Fprintf(tw, "Output:\t%s\n", compactJSON(st.Output))
	}
	return tw.Flush()
}

// oneLine keeps a message on its row of the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// compactJSON writes JSON on one line; what is not JSON is shown as it came.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func newAsyncQueueCmd() *cobra.Command {
	var cfg clientConfig
	var pf predictFlags
	cmd := &cobra.Command{
		Use:   "async-queue MODEL",
		Short: "Show how many async requests wait and run on a model's deployment",
		Long: "Show the async queue of a model's production deployment, or of the one that --environment,\n" +
			"--development or --deployment names: requests waiting for a replica and requests running.\n" +
			"MODEL is a model's ID or name.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := pf.target(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			c, gateway, err := gatewayClient(cfg, pf.GatewayURL)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			q, err := withModelID(ctx, c, args[0], func(modelID string) (client.AsyncQueue, error) {
				return c.Gateway(gateway).AsyncQueueStatus(ctx, modelID, target)
			})
			if err != nil {
				return explainPredict(cfg, gateway, err)
			}
			out := cmd.OutOrStdout()
			if cfg.Output == "json" {
				return printJSON(out, q)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "MODEL\tDEPLOYMENT\tQUEUED\tIN PROGRESS")
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", q.ModelID, q.DeploymentID, q.NumQueuedRequests, q.NumInProgressRequests)
			return tw.Flush()
		},
	}
	addTargetFlags(cmd, &pf, "")
	gatewayFlag(cmd, &pf.GatewayURL)
	addClientFlags(cmd, &cfg)
	return cmd
}

func newWebhookSecretCmd() *cobra.Command {
	var cfg clientConfig
	var rotate bool
	cmd := &cobra.Command{
		Use:   "webhook-secret",
		Short: "Show whether your workspace has a webhook secret, or make a new one with --rotate",
		Long: "Webhooks of async requests are signed with the workspace's secret: X-Modelplane-Signature is\n" +
			"v1=<hex HMAC-SHA256 of \"<X-Modelplane-Timestamp>.<body>\">. Without flags, show whether the\n" +
			"workspace has one and since when. With --rotate, make one or replace it, and print it: this is the\n" +
			"only time it is shown, and webhooks are signed with it from then on.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			out := cmd.OutOrStdout()
			if rotate {
				s, err := c.RotateWebhookSecret(ctx)
				if err != nil {
					return cfg.explain(err)
				}
				if cfg.Output == "json" {
					return printJSON(out, s)
				}
				// The secret alone on stdout, so that $(modelplane webhook-secret --rotate) is it.
				fmt.Fprintln(cmd.ErrOrStderr(), "New webhook secret (shown only this once; webhooks are signed with it from now on):")
				_, err = fmt.Fprintln(out, s.Secret)
				return err
			}
			st, err := c.WebhookSecret(ctx)
			if err != nil {
				return cfg.explain(err)
			}
			if cfg.Output == "json" {
				return printJSON(out, st)
			}
			if !st.Exists || st.CreatedAt == nil {
				_, err = fmt.Fprintln(out, "no webhook secret: make one with `modelplane webhook-secret --rotate`")
				return err
			}
			_, err = fmt.Fprintf(out, "webhook secret made %s (it is shown only when made; `modelplane webhook-secret --rotate` replaces it)\n",
				st.CreatedAt.UTC().Format(time.RFC3339))
			return err
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "make a new secret (replacing the current one) and print it once")
	addClientFlags(cmd, &cfg)
	return cmd
}
