// Command pause is the sandbox process of the local cluster's real node: it
// holds a pod's namespaces open and exits on SIGTERM or SIGINT. The node has
// no registry to pull the usual pause image from, so it is built from source
// like the other binaries.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
