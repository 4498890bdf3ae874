package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/client"
)

// envGatewayURL is where predict sends requests when the gateway has an address of its own;
// in `modelplane dev` it shares the API's.
const envGatewayURL = "MODELPLANE_GATEWAY_URL"

// modelIDPattern is the shape of a model ID (API.md). An argument of this shape goes to the
// gateway as is, so that a prediction costs one request and needs no management API.
var modelIDPattern = regexp.MustCompile(`^[a-z0-9]{8}$`)

type predictFlags struct {
	Environment string
	Development bool
	Deployment  string
	Stream      bool
	GatewayURL  string
	Async       asyncFlags
}

func newPredictCmd() *cobra.Command {
	var cfg clientConfig
	var pf predictFlags
	cmd := &cobra.Command{
		Use:   "predict MODEL [JSON]",
		Short: "Send a request to a model and print its answer (JSON from the argument, or stdin when it is - or missing)",
		Long: "Send a request to a model's production deployment, or the one that --environment, --development or\n" +
			"--deployment names, and print the model's answer as it comes, streamed when the model streams.\n" +
			"MODEL is a model's ID or name. The request is JSON, from the argument or, when that is - or missing, stdin.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := pf.target(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			body, err := predictBody(cmd.InOrStdin(), args[1:])
			if err != nil {
				return err
			}
			asyncReq, err := pf.Async.request(cmd.Flags().Changed, pf.Stream, body)
			if err != nil {
				return err
			}
			c, gateway, err := gatewayClient(cfg, pf.GatewayURL)
			if err != nil {
				return err
			}
			if pf.Async.Async {
				err = asyncPredict(cmd.Context(), cmd.OutOrStdout(), c, gateway, args[0], target, asyncReq, cfg.Output)
			} else {
				err = predict(cmd.Context(), cmd.OutOrStdout(), c, gateway, args[0], target, body, pf.Stream)
			}
			return explainPredict(cfg, gateway, err)
		},
	}
	f := cmd.Flags()
	addTargetFlags(cmd, &pf, "send to ")
	f.BoolVar(&pf.Stream, "stream", false, "ask for a streamed answer (Accept: text/event-stream) and print it as it arrives")
	gatewayFlag(cmd, &pf.GatewayURL)
	addAsyncFlags(cmd, &pf.Async)
	addClientFlags(cmd, &cfg)
	f.Lookup("output").Usage = "table or json, as for every command; the model's answer is printed as is either way (with --async, json prints {\"request_id\"})"
	return cmd
}

// addTargetFlags registers --environment, --development and --deployment, which pick the
// deployment a request goes to; each one's help starts with verb.
func addTargetFlags(cmd *cobra.Command, pf *predictFlags, verb string) {
	f := cmd.Flags()
	f.StringVar(&pf.Environment, "environment", "", verb+"the deployment that serves this environment")
	f.BoolVar(&pf.Development, "development", false, verb+"the model's development deployment")
	f.StringVar(&pf.Deployment, "deployment", "", verb+"this deployment (ID)")
}

// target checks that at most one target flag is set and returns where the request goes;
// changed reports whether a flag was given, so that an empty --environment is refused
// rather than read as production.
func (pf predictFlags) target(changed func(name string) bool) (client.Target, error) {
	var set []string
	t := client.ProductionTarget()
	if changed("environment") {
		if strings.TrimSpace(pf.Environment) == "" {
			return t, errors.New("--environment needs a name")
		}
		set = append(set, "--environment "+pf.Environment)
		t = client.EnvironmentTarget(pf.Environment)
	}
	if pf.Development {
		set = append(set, "--development")
		t = client.DevelopmentTarget()
	}
	if changed("deployment") {
		if strings.TrimSpace(pf.Deployment) == "" {
			return t, errors.New("--deployment needs a deployment ID")
		}
		set = append(set, "--deployment "+pf.Deployment)
		t = client.DeploymentTarget(pf.Deployment)
	}
	if len(set) > 1 {
		return t, fmt.Errorf("%s and %s cannot go together: a request goes to one target (production when none is given)",
			strings.Join(set[:len(set)-1], ", "), set[len(set)-1])
	}
	return t, nil
}

// predictBody returns the request: the argument, or stdin when it is "-" or missing. It
// must be JSON, checked here so that a shell's mangled quoting is explained before anything
// is sent.
func predictBody(stdin io.Reader, args []string) ([]byte, error) {
	from := "the JSON argument"
	var b []byte
	if len(args) == 0 || args[0] == "-" {
		if len(args) == 0 && isTerminalReader(stdin) {
			return nil, errors.New("no request: give the JSON as the second argument, pipe it in, or pass - to type it")
		}
		from = "stdin"
		var err error
		if b, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("reading the request from stdin: %w", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil, errors.New("no request on stdin: give the JSON as the second argument or pipe it in")
		}
	} else {
		b = []byte(args[0])
	}
	var v json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		msg := fmt.Sprintf("%s is not valid JSON: %v", from, err)
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			msg = fmt.Sprintf("%s is not valid JSON: %v (at byte %d)", from, err, syn.Offset)
		}
		if from != "stdin" {
			msg += `; quote it for the shell, e.g. '{"prompt": "hi"}'`
		}
		return nil, errors.New(msg)
	}
	return b, nil
}

// predict sends body to the model and copies the answer to out as it arrives. An argument
// shaped like an ID goes straight to the gateway; if the gateway does not know it, it may
// still be a model's name, which the API then resolves.
func predict(ctx context.Context, out io.Writer, c *client.Client, gatewayURL, model string,
	t client.Target, body []byte, stream bool) error {
	accept := ""
	if stream {
		accept = "text/event-stream"
	}
	gw := c.Gateway(gatewayURL)
	idShaped := modelIDPattern.MatchString(model)
	modelID := model
	if !idShaped {
		var err error
		if modelID, err = resolveModel(ctx, c, model); err != nil {
			return err
		}
	}
	answer, _, err := gw.PredictStream(ctx, modelID, t, body, accept)
	if idShaped && client.IsStatus(err, http.StatusNotFound) {
		// A lookup that fails leaves the gateway's 404, which says more than the lookup's error.
		if id, lookupErr := resolveModel(ctx, c, model); lookupErr == nil && id != model {
			answer, _, err = gw.PredictStream(ctx, id, t, body, accept)
		}
	}
	if err != nil {
		return err
	}
	defer answer.Close()
	return copyAnswer(out, answer)
}

// copyAnswer writes the answer to out as each piece arrives, so that a streamed answer is
// seen while the model produces it. On a terminal an answer without a final newline gets
// one, so that the prompt starts on its own line; a pipe gets the bytes as they came.
func copyAnswer(out io.Writer, answer io.Reader) error {
	buf := make([]byte, 32<<10)
	var last byte = '\n' // nothing written needs no newline
	for {
		n, err := answer.Read(buf)
		if n > 0 {
			last = buf[n-1]
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the model's answer: %w", err)
		}
	}
	if last != '\n' && isTerminal(out) {
		_, err := fmt.Fprintln(out)
		return err
	}
	return nil
}

// explainPredict is clientConfig.explain for a request that went to the gateway, whose
// address may not be the API's.
func explainPredict(cfg clientConfig, gatewayURL string, err error) error {
	var apiErr *client.Error
	var urlErr *url.Error
	if gatewayURL != "" && !errors.As(err, &apiErr) && errors.As(err, &urlErr) && !urlErr.Timeout() &&
		strings.HasPrefix(urlErr.URL, strings.TrimRight(gatewayURL, "/")+"/") {
		return fmt.Errorf("cannot reach the gateway at %s (set %s or --gateway-url): %v", gatewayURL, envGatewayURL, urlErr.Err)
	}
	return cfg.explain(err)
}

// isTerminalReader reports whether r is a terminal, where reading a request would wait for
// someone to type it.
func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
