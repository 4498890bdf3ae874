//go:build tools

// Package weed pins the SeaweedFS server that the S3 tests build and start. It is a module
// of its own so that the server's many dependencies stay out of modelplane's module graph.
package weed

import _ "github.com/seaweedfs/seaweedfs/weed"
