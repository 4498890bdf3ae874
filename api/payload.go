package api

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// Bounds of deploy_timeout_minutes, as Baseten's spec gives them.
const (
	minDeployTimeoutMinutes = 10
	maxDeployTimeoutMinutes = 1440
)

// payload is a checked DeploymentArchivePayloadV1: what a create request, or a
// prepare_model_upload, says of the deployment beside its package. A field left out or null
// is its zero value (nil for those whose zero means something).
type payload struct {
	at          string          // where it sits in the body, for errors: "source.deployment"
	config      json.RawMessage // the object as sent
	rawConfig   *string
	userEnv     map[string]any
	environment string
	preserve    *bool // preserve_env_instance_type
	timeout     *int  // deploy_timeout_minutes
	name        string
	labels      map[string]any
	development *bool // is_development
}

// payloadFields are the fields of DeploymentArchivePayloadV1, and modelplane's `name`.
var payloadFields = map[string]bool{
	"config": true, "raw_config": true, "user_env": true, "labels": true, "environment_name": true,
	"preserve_env_instance_type": true, "is_development": true, "deploy_timeout_minutes": true,
	"deployment_name": true, "name": true,
}

// readPayload reads and checks the payload at `at`. Each field is checked for its own type
// and bounds; a null is a field left out, and an unknown field is 400.
func readPayload(raw json.RawMessage, at string) (payload, error) {
	p := payload{at: at}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return p, Errorf(http.StatusBadRequest, "%s: must be an object", at)
	}
	var name, depName string
	// In the order of the keys, so that of two mistakes the same one is always reported.
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
		field := at + "." + k
		if !payloadFields[k] {
			return p, Errorf(http.StatusBadRequest, "%s: unknown field", field)
		}
		if string(v) == "null" {
			continue
		}
		switch k {
		case "config":
			var cfg map[string]json.RawMessage
			if json.Unmarshal(v, &cfg) != nil {
				return p, Errorf(http.StatusBadRequest, "%s: must be an object (config.yaml as JSON)", field)
			}
			p.config = v
		case "raw_config":
			var s string
			if json.Unmarshal(v, &s) != nil {
				return p, Errorf(http.StatusBadRequest, "%s: must be the text of config.yaml", field)
			}
			p.rawConfig = &s
		case "user_env":
			if json.Unmarshal(v, &p.userEnv) != nil {
				return p, Errorf(http.StatusBadRequest, "%s: must be an object", field)
			}
		case "labels":
			if json.Unmarshal(v, &p.labels) != nil {
				return p, Errorf(http.StatusBadRequest, "%s: must be an object", field)
			}
		case "environment_name":
			if json.Unmarshal(v, &p.environment) != nil || !environmentName.MatchString(p.environment) {
				return p, Errorf(http.StatusBadRequest, "%s: must be an environment name (1-63 of a-z, 0-9, '-', '_')", field)
			}
		case "preserve_env_instance_type":
			b, err := boolValue(v, field)
			if err != nil {
				return p, err
			}
			p.preserve = &b
		case "is_development":
			b, err := boolValue(v, field)
			if err != nil {
				return p, err
			}
			p.development = &b
		case "deploy_timeout_minutes":
			var n int
			if json.Unmarshal(v, &n) != nil || n < minDeployTimeoutMinutes || n > maxDeployTimeoutMinutes {
				return p, Errorf(http.StatusBadRequest, "%s: must be a whole number of minutes from %d to %d, not %s",
					field, minDeployTimeoutMinutes, maxDeployTimeoutMinutes, v)
			}
			p.timeout = &n
		case "deployment_name", "name":
			var s string
			if json.Unmarshal(v, &s) != nil || !deploymentName.MatchString(s) {
				return p, Errorf(http.StatusBadRequest, "%s: use 1-255 of letters, digits, '.', '_' or '-'", field)
			}
			if k == "name" {
				name = s
			} else {
				depName = s
			}
		}
	}
	if name != "" && depName != "" && name != depName {
		return p, Errorf(http.StatusBadRequest, "%s.deployment_name %q and %s.name %q disagree; send one of them",
			at, depName, at, name)
	}
	p.name = cmp.Or(depName, name)
	return p, nil
}

// target is what a create request, or a prepare_model_upload, asks for, once its two
// spellings (Baseten's in the payload, modelplane's earlier ones at the top) agree.
type target struct {
	development bool
	environment string
}

// resolveTarget reconciles the payload's is_development and environment_name with the
// top-level development and environment (topDev, topEnv: nil when not sent), and checks the
// spec's rule that a development push leaves environment_name, deployment_name and
// preserve_env_instance_type at their defaults.
func resolveTarget(p payload, topDev *bool, topEnv *string) (target, error) {
	var t target
	switch {
	case topDev != nil && p.development != nil && *topDev != *p.development:
		return t, Errorf(http.StatusBadRequest, "development (%t) and %s.is_development (%t) disagree; send one of them",
			*topDev, p.at, *p.development)
	case topDev != nil:
		t.development = *topDev
	case p.development != nil:
		t.development = *p.development
	}
	switch {
	case topEnv != nil && p.environment != "" && *topEnv != p.environment:
		return t, Errorf(http.StatusBadRequest, "environment %q and %s.environment_name %q disagree; send one of them",
			*topEnv, p.at, p.environment)
	case topEnv != nil:
		t.environment = *topEnv
	default:
		t.environment = p.environment
	}
	if t.development {
		switch {
		case t.environment != "":
			return t, Errorf(http.StatusBadRequest, "%s.environment_name: the development deployment is not deployed to an environment; promote it instead", p.at)
		case p.name != "":
			return t, Errorf(http.StatusBadRequest, "%s.deployment_name: the development deployment is always named development", p.at)
		case p.preserve != nil && !*p.preserve:
			return t, Errorf(http.StatusBadRequest, "%s.preserve_env_instance_type: a development push leaves it at its default (true)", p.at)
		}
	}
	return t, nil
}

// checkConfig parses the payload's config by the rules of config.yaml; nil when it gave none.
func (p payload) checkConfig() (*modelpkg.Config, error) {
	if p.config == nil {
		return nil, nil
	}
	cfg, err := modelpkg.ConfigFromJSON(p.config)
	var fe *modelpkg.FieldError
	switch {
	case errors.As(err, &fe) && fe.Field != "":
		return nil, Errorf(configStatus(fe), "%s.config.%s: %s", p.at, fe.Field, fe.Message)
	case errors.As(err, &fe):
		return nil, Errorf(configStatus(fe), "%s.config: %s", p.at, fe.Message)
	case err != nil:
		return nil, Errorf(http.StatusBadRequest, "%s.config: %v", p.at, err)
	}
	return &cfg, nil
}

// deploymentConfig is what the deployment keeps of the payload's config, given its package's:
// the config when it runs the model differently (nil when it is the package's own), and the
// config.yaml text when it parses to the config the deployment runs. A raw_config that does
// not is dropped, as Baseten drops an invalid one, and the reason is returned for the log.
// gpus is the GPUs one replica of the config the deployment runs holds (a MIG slice is one).
func (p payload) deploymentConfig(archiveConfig json.RawMessage) (override store.JSONMap, raw *string, dropped string, gpus int, err error) {
	cfg, err := p.checkConfig()
	if err != nil {
		return nil, nil, "", 0, err
	}
	pkg, err := modelpkg.ParseConfig(archiveConfig)
	if err != nil {
		return nil, nil, "", 0, fmt.Errorf("the archive's stored config does not parse: %w", err)
	}
	effective := pkg
	if cfg != nil && !cfg.SameAs(pkg) {
		if err := json.Unmarshal(p.config, &override); err != nil {
			return nil, nil, "", 0, err
		}
		effective = *cfg
	}
	if p.rawConfig != nil {
		rc, err := modelpkg.ParseConfig([]byte(*p.rawConfig))
		switch {
		case err != nil:
			dropped = err.Error()
		case !rc.SameAs(effective):
			dropped = "it does not parse to the config the deployment runs"
		default:
			raw = p.rawConfig
		}
	}
	return override, raw, dropped, effective.Resources.GPUCount, nil
}

// newDeployment is the row the payload makes, beside what the route decides (model, name
// for the development deployment, archive, config, settings).
func (p payload) newDeployment(nd store.NewDeployment) store.NewDeployment {
	if !nd.IsDevelopment {
		nd.Name = p.name
	}
	nd.Labels, nd.UserEnv, nd.DeployTimeoutMinutes = p.labels, p.userEnv, p.timeout
	nd.DropEnvInstanceType = p.preserve != nil && !*p.preserve
	return nd
}
