// Package check validates the deployment artifacts under deploy/: the Compose file, the Helm
// chart and the systemd units. It is a module of its own so that helm, client-go and
// compose-go stay out of modelplane's.
package check
