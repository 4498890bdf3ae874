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
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
)

// Where client commands find the API and their key. The key has no flag default on purpose:
// a default would print the secret in --help.
const (
	defaultAPIURL = "http://127.0.0.1:8080"
	envAPIURL     = "MODELPLANE_URL"
	envAPIKey     = "MODELPLANE_API_KEY"
	envDataDir    = "MODELPLANE_DATA_DIR"
	// readTimeout bounds a listing, so that an API that accepted the connection but hangs
	// does not hang the terminal with it.
	readTimeout = 30 * time.Second
)

// clientConfig is what every client command reads from its flags.
type clientConfig struct {
	URL    string
	APIKey string // --api-key; MODELPLANE_API_KEY and the key file are read when the command runs
	Output string
	// TLSCAFile is a private certificate authority the API's https:// certificate chains to.
	TLSCAFile string

	keySource string // where the key came from, named when the API refuses it
}

func addClientFlags(cmd *cobra.Command, c *clientConfig) {
	f := cmd.Flags()
	f.StringVar(&c.URL, "url", envString(envAPIURL, defaultAPIURL), "the modelplane API ("+envAPIURL+")")
	f.StringVar(&c.APIKey, "api-key", "", "API key ("+envAPIKey+"; else the key that modelplane dev wrote to ./.modelplane/api-key)")
	f.StringVarP(&c.Output, "output", "o", "table", "table or json")
	tlsCAFlag(cmd, &c.TLSCAFile, "the API")
}

// client checks the flags and returns a client with the key from the flag, the
// environment or dev's key file, in that order.
func (c *clientConfig) client() (*client.Client, error) {
	if c.Output != "table" && c.Output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", c.Output)
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: use http://host:port or https://host (--url, %s)", c.URL, envAPIURL)
	}
	key, source, err := resolveAPIKey(c.APIKey)
	if err != nil {
		return nil, err
	}
	c.keySource = source
	hc, err := httpClientWithCA(c.TLSCAFile)
	if err != nil {
		return nil, err
	}
	cl := client.New(c.URL, key)
	cl.HTTPClient = hc
	return cl, nil
}

// resolveAPIKey returns the key to use and where it came from.
func resolveAPIKey(flag string) (key, source string, err error) {
	if k := strings.TrimSpace(flag); k != "" {
		return k, "--api-key", nil
	}
	if k := envString(envAPIKey, ""); k != "" {
		return k, envAPIKey, nil
	}
	file := filepath.Join(envString(envDataDir, defaultDataDir), devstack.KeyFile)
	b, err := os.ReadFile(file)
	if k := strings.TrimSpace(string(b)); err == nil && k != "" {
		return k, file, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("reading the API key from %s: %w", file, err)
	}
	return "", "", fmt.Errorf("no API key: set %s or --api-key, or run `modelplane dev` here (it writes %s); "+
		"an operator can make one with `modelplane keys create`", envAPIKey, file)
}

// explain adds what the user can do about an error to the API's or the network's message.
func (c *clientConfig) explain(err error) error {
	var apiErr *client.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		return fmt.Errorf("%w; the key came from %s", err, c.keySource)
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden:
		return fmt.Errorf("%w; the key came from %s: an operator makes admin keys with `modelplane keys create --admin`", err, c.keySource)
	case errors.As(err, &apiErr):
		return err
	case errors.As(err, &urlErr) && !urlErr.Timeout():
		return fmt.Errorf("cannot reach the API at %s (is `modelplane dev` running? set %s or --url): %v", c.URL, envAPIURL, urlErr.Err)
	}
	return err
}

// listCmd builds a client command that fetches something and prints it as a table or as
// the API's JSON.
func listCmd[T any](use, short string, args cobra.PositionalArgs,
	fetch func(ctx context.Context, c *client.Client, args []string) (T, error),
	table func(w io.Writer, v T)) *cobra.Command {
	var cfg clientConfig
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			v, err := fetch(ctx, c, args)
			if err != nil {
				return cfg.explain(err)
			}
			out := cmd.OutOrStdout()
			if cfg.Output == "json" {
				return printJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
			table(tw, v)
			return tw.Flush()
		},
	}
	addClientFlags(cmd, &cfg)
	return cmd
}

func newModelsCmd() *cobra.Command {
	return listCmd("models", "List the models of your workspace", cobra.NoArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]apiv1.ModelV1, error) {
			return c.Models(ctx)
		},
		func(w io.Writer, models []apiv1.ModelV1) {
			fmt.Fprintln(w, "ID\tNAME\tDEPLOYMENTS\tPRODUCTION\tDEVELOPMENT")
			for _, m := range models {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", m.ID, m.Name, m.DeploymentsCount,
					orDash(m.ProductionDeploymentID), orDash(m.DevelopmentDeploymentID))
			}
		})
}

func newDeploymentsCmd() *cobra.Command {
	return listCmd("deployments MODEL", "List a model's deployments", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, args []string) ([]apiv1.DeploymentV1, error) {
			return withModelID(ctx, c, args[0], func(id string) ([]apiv1.DeploymentV1, error) { return c.Deployments(ctx, id) })
		},
		func(w io.Writer, deployments []apiv1.DeploymentV1) {
			fmt.Fprintln(w, "ID\tNAME\tSTATUS\tREPLICAS\tENVIRONMENT\tCREATED")
			for _, d := range deployments {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Name, d.Status, d.ActiveReplicaCount,
					orDash(d.Environment), d.CreatedAt.UTC().Format(time.RFC3339))
			}
		})
}

func newBuildLogsCmd() *cobra.Command {
	return listCmd("build-logs MODEL DEPLOYMENT", "Show the output of a deployment's build: its requirements being installed on the nodes", cobra.ExactArgs(2),
		func(ctx context.Context, c *client.Client, args []string) (apiv1.BuildLogsV1, error) {
			return withModelID(ctx, c, args[0], func(id string) (apiv1.BuildLogsV1, error) { return c.BuildLogs(ctx, id, args[1]) })
		},
		func(w io.Writer, l apiv1.BuildLogsV1) {
			fmt.Fprintf(w, "# deployment %s is %s", l.DeploymentID, l.Status)
			if l.StatusReason != "" && !l.Status.Failed() {
				fmt.Fprintf(w, ": %s", l.StatusReason)
			}
			fmt.Fprintln(w)
			if len(l.Lines) == 0 {
				fmt.Fprintln(w, "# no build output: the package has no requirements, or its build has not started")
			}
			for _, line := range l.Lines {
				fmt.Fprintln(w, line)
			}
		})
}

func newEnvironmentsCmd() *cobra.Command {
	return listCmd("environments MODEL", "List a model's environments and their promotions in flight", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, args []string) ([]apiv1.EnvironmentV1, error) {
			return withModelID(ctx, c, args[0], func(id string) ([]apiv1.EnvironmentV1, error) { return c.Environments(ctx, id) })
		},
		func(w io.Writer, envs []apiv1.EnvironmentV1) {
			fmt.Fprintln(w, "NAME\tCURRENT\tCANDIDATE\tINSTANCE\tPROMOTION")
			for _, e := range envs {
				instance := e.InstanceType.ID
				if instance == "" {
					instance = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Name, deploymentCell(e.CurrentDeployment),
					deploymentCell(e.CandidateDeployment), instance, promotionCell(e.InProgressPromotion))
			}
		})
}

// deploymentCell shows a deployment by ID, which other commands take, and by name, which
// people recognise.
func deploymentCell(d *apiv1.DeploymentV1) string {
	if d == nil {
		return "-"
	}
	return d.ID + " (" + d.Name + ")"
}

func promotionCell(p *apiv1.PromotionV1) string {
	if p == nil {
		return "-"
	}
	s := string(p.Status) + " " + strconv.Itoa(p.PercentTrafficToNewVersion) + "%"
	if p.ErrorMessage != "" {
		s += ": " + p.ErrorMessage
	}
	return s
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// printJSON writes v indented, one value per run, for jq and scripts.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
