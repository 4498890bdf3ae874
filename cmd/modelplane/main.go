// Command modelplane is the whole of modelplane in one binary: the dev stack, each
// production process on its own, and operator commands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
