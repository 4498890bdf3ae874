package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	// The package main tests have a helper named modelplane, hence the alias.
	mp "github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

// Defaults of the commands that change deployments.
const (
	// defaultWaitTimeout bounds push and promote with --wait: long enough for an image
	// build and a model download, short enough that a stuck deployment ends the command.
	defaultWaitTimeout = 10 * time.Minute
	// defaultPollInterval is how often --wait asks the API; a stage rarely lasts under a second.
	defaultPollInterval = time.Second
	// mutateTimeout bounds a single call that changes something (activate, delete, ...).
	mutateTimeout = time.Minute
)

// waitConfig is the flags of commands that can wait for a deployment to become ACTIVE.
type waitConfig struct {
	Wait     bool
	NoWait   bool
	Timeout  time.Duration
	Interval time.Duration
}

func addWaitFlags(cmd *cobra.Command, w *waitConfig) {
	f := cmd.Flags()
	f.BoolVar(&w.Wait, "wait", true, "wait until the deployment is ACTIVE (and serves the environment), showing progress")
	f.BoolVar(&w.NoWait, "no-wait", false, "return as soon as the API accepted the request")
	f.DurationVar(&w.Timeout, "timeout", defaultWaitTimeout, "give up after this long")
	f.DurationVar(&w.Interval, "poll-interval", defaultPollInterval, "how often to ask for the status while waiting")
	_ = f.MarkHidden("poll-interval")
}

func (w waitConfig) waiting() bool { return w.Wait && !w.NoWait }

type pushFlags struct {
	Development bool
	Environment string
	Promote     bool
	Name        string
	ModelName   string
}

func newPushCmd() *cobra.Command {
	var cfg clientConfig
	var wc waitConfig
	var pf pushFlags
	cmd := &cobra.Command{
		Use:   "push DIR",
		Short: "Upload a model package and deploy it, creating the model on first push",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := pf.environment()
			if err != nil {
				return err
			}
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wc.Timeout)
			defer cancel()
			return cfg.explain(push(ctx, cmd.OutOrStdout(), c, cfg, wc, pf, env, args[0]))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&pf.Development, "development", false, "create or replace the model's development deployment")
	f.StringVar(&pf.Environment, "environment", "", "promote the deployment to this environment once it is ACTIVE")
	f.BoolVar(&pf.Promote, "promote", false, "same as --environment "+mp.ProductionEnvironment)
	f.StringVar(&pf.Name, "name", "", "the deployment's name (default deployment-N)")
	f.StringVar(&pf.ModelName, "model-name", "", "the model's name (default model_name in DIR/config.yaml)")
	addWaitFlags(cmd, &wc)
	addClientFlags(cmd, &cfg)
	return cmd
}

// environment checks the combination of flags and returns the environment to deploy to.
func (pf pushFlags) environment() (string, error) {
	env := pf.Environment
	if pf.Promote {
		if env != "" && env != mp.ProductionEnvironment {
			return "", fmt.Errorf("--promote deploys to %s; it cannot go with --environment %s", mp.ProductionEnvironment, env)
		}
		env = mp.ProductionEnvironment
	}
	if pf.Development && env != "" {
		return "", errors.New("--development cannot go with --environment or --promote: the development deployment serves no environment")
	}
	if pf.Development && pf.Name != "" {
		return "", errors.New("--development cannot go with --name: the development deployment is always named development")
	}
	return env, nil
}

func push(ctx context.Context, out io.Writer, c *client.Client, cfg clientConfig, wc waitConfig, pf pushFlags, env, dir string) error {
	pkg, err := modelpkg.ReadConfig(dir)
	if err != nil {
		return err
	}
	name := pf.ModelName
	if name == "" {
		name = pkg.ModelName
	}
	archive, err := upload(ctx, c, dir)
	if err != nil {
		return err
	}
	models, err := c.Models(ctx)
	if err != nil {
		return err
	}
	// The payload carries config.yaml as Baseten's clients send it; it is the archive's, so
	// the deployment runs the archive's config.
	source, err := client.PackagePayload(pkg)
	if err != nil {
		return err
	}
	source.DeploymentName, source.EnvironmentName, source.IsDevelopment = pf.Name, env, pf.Development
	var m apiv1.ModelV1
	var d apiv1.DeploymentV1
	if existing, ok := modelNamed(models, name); ok {
		m, d, err = c.CreateDeployment(ctx, existing.ID, apiv1.CreateDeploymentRequest{
			Source: apiv1.DeploymentArchiveSource{S3Key: archive.ID, Deployment: source},
		})
	} else {
		m, d, err = c.CreateModel(ctx, apiv1.CreateModelRequest{
			Source: apiv1.ModelArchiveSource{Name: name, S3Key: archive.ID, Deployment: source},
		})
	}
	if err != nil {
		return err
	}
	return finish(ctx, out, c, cfg, wc, m, d, env)
}

// upload packs dir straight into the request body, so the package is never held whole in
// memory or written to a temporary file. The config's external_package_dirs that lie
// outside dir travel in the archive as .external/<i>, where the python runtime finds them.
func upload(ctx context.Context, c *client.Client, dir string) (apiv1.ArchiveV1, error) {
	external, err := modelpkg.ExternalPackageDirs(dir)
	if err != nil {
		return apiv1.ArchiveV1{}, err
	}
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		_, err := modelpkg.PackWithExternal(dir, external, pw)
		pw.CloseWithError(err)
		packed <- err
	}()
	a, err := c.UploadArchive(ctx, pr)
	// Unblocks the packer if the upload stopped reading early.
	pr.CloseWithError(errUploadEnded)
	if err != nil {
		// A packing error (a missing external package directory, say) is the cause to show.
		if packErr := <-packed; packErr != nil && !errors.Is(packErr, errUploadEnded) {
			return a, packErr
		}
		return a, fmt.Errorf("uploading %s: %w", dir, err)
	}
	return a, nil
}

// errUploadEnded is what the packer's writes get once the upload no longer reads.
var errUploadEnded = errors.New("upload ended")

// modelNamed finds a model by its name.
func modelNamed(models []apiv1.ModelV1, name string) (apiv1.ModelV1, bool) {
	for _, m := range models {
		if m.Name == name {
			return m, true
		}
	}
	return apiv1.ModelV1{}, false
}

// resolveModel takes a model's ID or name and returns its ID. An argument that matches
// neither is passed on as an ID, so that the API's "not found" reaches the user.
func resolveModel(ctx context.Context, c *client.Client, arg string) (string, error) {
	models, err := c.Models(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range models {
		if m.ID == arg {
			return m.ID, nil
		}
	}
	if m, ok := modelNamed(models, arg); ok {
		return m.ID, nil
	}
	return arg, nil
}

// finish waits for the deployment when asked to and prints the outcome: a summary line,
// or with --output json the final {"model", "deployment"}.
func finish(ctx context.Context, out io.Writer, c *client.Client, cfg clientConfig, wc waitConfig,
	m apiv1.ModelV1, d apiv1.DeploymentV1, env string) error {
	if wc.waiting() {
		// JSON output is for scripts: one object on stdout, no progress around it.
		p := newProgress(io.Discard, false)
		if cfg.Output != "json" {
			p = newProgress(out, isTerminal(out))
		}
		var err error
		d, err = c.WaitActive(ctx, m.ID, d.ID, wc.Interval, p.deployment)
		if err == nil && env != "" {
			_, err = c.WaitPromoted(ctx, m.ID, env, d.ID, wc.Interval, func(e apiv1.EnvironmentV1) { p.environment(e, d) })
		}
		p.done()
		if err != nil {
			return err
		}
		if m, err = c.Model(ctx, m.ID); err != nil {
			return err
		}
		if d, err = c.Deployment(ctx, m.ID, d.ID); err != nil {
			return err
		}
	}
	if cfg.Output == "json" {
		return printJSON(out, apiv1.CreatedV1{Model: m, Deployment: d})
	}
	line := fmt.Sprintf("%s: deployment %s (%s) is %s", m.Name, d.Name, d.ID, d.Status)
	if env != "" {
		if wc.waiting() {
			line += " and serves " + env
		} else {
			line += "; it will be promoted to " + env + " once ACTIVE"
		}
	}
	_, err := fmt.Fprintf(out, "%s (model %s)\n", line, m.ID)
	return err
}

// progress shows what a wait sees: on a terminal one line rewritten in place, otherwise a
// plain line each time it changes, which reads well in CI logs.
type progress struct {
	w        io.Writer
	terminal bool
	last     string
}

func newProgress(w io.Writer, terminal bool) *progress { return &progress{w: w, terminal: terminal} }

func (p *progress) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) deployment(d apiv1.DeploymentV1) {
	if d.Status == mp.DeploymentBuilding {
		// The build says how far it is: which nodes install the requirements, or reuse them.
		line := fmt.Sprintf("%s (%s): %s", d.Name, d.ID, d.Status)
		if d.StatusReason != nil && *d.StatusReason != "" {
			line += ": " + *d.StatusReason
		}
		p.show(line)
		return
	}
	want := max(d.AutoscalingSettings.MinReplica, 1)
	p.show(fmt.Sprintf("%s (%s): %s, %d/%d replicas ready", d.Name, d.ID, d.Status, d.ActiveReplicaCount, want))
}

func (p *progress) environment(e apiv1.EnvironmentV1, d apiv1.DeploymentV1) {
	switch pr := e.InProgressPromotion; {
	case pr != nil:
		p.show(fmt.Sprintf("%s: promoting %s (%s): %s, %d%% of traffic", e.Name, d.Name, d.ID, pr.Status, pr.PercentTrafficToNewVersion))
	case e.CurrentDeployment != nil && e.CurrentDeployment.ID == d.ID:
		p.show(fmt.Sprintf("%s: served by %s (%s)", e.Name, d.Name, d.ID))
	default:
		p.show(fmt.Sprintf("%s: waiting for the promotion of %s (%s) to start", e.Name, d.Name, d.ID))
	}
}

// done ends the rewritten line so that what follows starts on its own.
func (p *progress) done() {
	if p.terminal && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a character device such as a terminal, where progress
// may rewrite its line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newPromoteCmd() *cobra.Command {
	var cfg clientConfig
	var wc waitConfig
	var env string
	var keep bool
	cmd := &cobra.Command{
		Use:   "promote MODEL DEPLOYMENT",
		Short: "Promote a deployment to production or another environment",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wc.Timeout)
			defer cancel()
			err = promote(ctx, cmd.OutOrStdout(), c, cfg, wc, args[0], args[1], env, !keep)
			if client.IsStatus(err, 409) {
				return fmt.Errorf("%w; see `modelplane environments %s`", err, args[0])
			}
			return cfg.explain(err)
		},
	}
	cmd.Flags().StringVar(&env, "environment", mp.ProductionEnvironment, "the environment to promote to")
	cmd.Flags().BoolVar(&keep, "keep-previous", false, "keep the previous deployment's replicas instead of scaling it down")
	addWaitFlags(cmd, &wc)
	addClientFlags(cmd, &cfg)
	return cmd
}

func promote(ctx context.Context, out io.Writer, c *client.Client, cfg clientConfig, wc waitConfig,
	model, ref, env string, scaleDown bool) error {
	modelID, err := resolveModel(ctx, c, model)
	if err != nil {
		return err
	}
	var d apiv1.DeploymentV1
	if env == mp.ProductionEnvironment {
		d, err = c.PromoteDeployment(ctx, modelID, ref, scaleDown)
	} else {
		d, err = c.PromoteToEnvironment(ctx, modelID, env, ref, scaleDown)
	}
	if err != nil {
		return err
	}
	m, err := c.Model(ctx, modelID)
	if err != nil {
		return err
	}
	return finish(ctx, out, c, cfg, wc, m, d, env)
}

// actionCmd builds a command that makes one change to a model or deployment and says what
// it did.
func actionCmd(use, short string, args cobra.PositionalArgs,
	act func(ctx context.Context, c *client.Client, modelID string, args []string) (string, map[string]any, error)) *cobra.Command {
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
			ctx, cancel := context.WithTimeout(cmd.Context(), mutateTimeout)
			defer cancel()
			modelID, err := resolveModel(ctx, c, args[0])
			if err != nil {
				return cfg.explain(err)
			}
			msg, obj, err := act(ctx, c, modelID, args[1:])
			if err != nil {
				return cfg.explain(err)
			}
			if cfg.Output == "json" {
				return printJSON(cmd.OutOrStdout(), obj)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		},
	}
	addClientFlags(cmd, &cfg)
	return cmd
}

func newActivateCmd() *cobra.Command {
	return actionCmd("activate MODEL DEPLOYMENT", "Start a deactivated deployment again", cobra.ExactArgs(2),
		func(ctx context.Context, c *client.Client, modelID string, args []string) (string, map[string]any, error) {
			err := c.ActivateDeployment(ctx, modelID, args[0])
			return fmt.Sprintf("activated deployment %s of model %s", args[0], modelID),
				map[string]any{"model_id": modelID, "deployment_id": args[0], "success": true}, err
		})
}

func newDeactivateCmd() *cobra.Command {
	return actionCmd("deactivate MODEL DEPLOYMENT", "Stop a deployment's replicas and keep the deployment", cobra.ExactArgs(2),
		func(ctx context.Context, c *client.Client, modelID string, args []string) (string, map[string]any, error) {
			err := c.DeactivateDeployment(ctx, modelID, args[0])
			return fmt.Sprintf("deactivated deployment %s of model %s", args[0], modelID),
				map[string]any{"model_id": modelID, "deployment_id": args[0], "success": true}, err
		})
}

func newDeleteCmd() *cobra.Command {
	return actionCmd("delete MODEL [DEPLOYMENT]",
		"Delete a deployment, or without DEPLOYMENT the model with all its deployments (no confirmation)",
		cobra.RangeArgs(1, 2),
		func(ctx context.Context, c *client.Client, modelID string, args []string) (string, map[string]any, error) {
			if len(args) == 1 {
				err := c.DeleteDeployment(ctx, modelID, args[0])
				return fmt.Sprintf("deleted deployment %s of model %s", args[0], modelID),
					map[string]any{"id": args[0], "model_id": modelID, "deleted": true}, err
			}
			err := c.DeleteModel(ctx, modelID)
			return "deleted model " + modelID + " with all its deployments and environments",
				map[string]any{"id": modelID, "deleted": true}, err
		})
}
