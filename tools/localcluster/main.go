// Command localcluster builds the pinned etcd, Kubernetes and kwok binaries
// from source and runs a local cluster with fake nodes.
//
//	go run ./tools/localcluster build                 # only build and cache the binaries
//	go run ./tools/localcluster up [--dir DIR] [--nodes N] [--real-node]
//
// up runs in the foreground until Ctrl-C or SIGTERM and then stops every
// component.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  localcluster build                       build and cache etcd, Kubernetes and kwok binaries
  localcluster up [--dir DIR] [--nodes N] [--real-node]
                                           run a local cluster until interrupted`

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "build":
		if len(args) > 1 {
			return errors.New(usage)
		}
		start := time.Now()
		b, err := cluster.EnsureBinaries(ctx, os.Stdout)
		if err != nil {
			return err
		}
		fmt.Printf("binaries ready in %s (%s)\n", b.Dir, time.Since(start).Round(time.Millisecond))
		return nil
	case "up":
		return up(ctx, args[1:])
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for data, credentials and logs (default: a temporary directory removed on exit)")
	nodes := fs.Int("nodes", 1, "number of fake nodes (with --real-node: besides it)")
	realNode := fs.Bool("real-node", false, "also run a kubelet with containerd as node localhost (needs root and the Debian packages containerd, runc, containernetworking-plugins)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New(usage)
	}
	n := *nodes
	if *realNode && !isSet(fs, "nodes") {
		n = 0
	}
	c, err := cluster.Start(ctx, cluster.Options{Dir: *dir, Nodes: n, RealNode: *realNode, Progress: os.Stdout})
	if err != nil {
		return err
	}
	fmt.Printf("\nlocal cluster running; logs in %s\n", c.Dir+"/logs")
	fmt.Printf("KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Println("press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Println("stopping local cluster")
	if err := c.Stop(); err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
