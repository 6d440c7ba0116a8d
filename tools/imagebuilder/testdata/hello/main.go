// Command hello stands in for an image's binary in the image builder's tests.
// With --version it prints the stamped version, as every KubeOpenCode binary
// does. With --selfcheck it proves that the base gives a Go program what it
// needs at run time: the nonroot account, CA certificates, time zone data, a
// writable /tmp and a root file system it cannot change.
package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/internal/version"
)

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	selfcheck := flag.Bool("selfcheck", false, "check the run-time environment and exit")
	flag.Parse()
	switch {
	case *showVersion:
		fmt.Println(version.Version)
	case *selfcheck:
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, "selfcheck:", err)
			os.Exit(1)
		}
		fmt.Println("selfcheck: ok")
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func check() error {
	u, err := user.Current()
	if err != nil {
		return fmt.Errorf("current user: %w", err)
	}
	if u.Uid != "65532" || u.Username != "nonroot" || u.HomeDir != "/home/nonroot" {
		return fmt.Errorf("running as %+v, want nonroot (65532) with home /home/nonroot", u)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		return fmt.Errorf("system CA certificates: %w", err)
	}
	if n := len(pool.Subjects()); n < 50 { //nolint:staticcheck // only counted
		return fmt.Errorf("system CA certificates: %d roots, want the full Mozilla set", n)
	}
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		return fmt.Errorf("time zone data: %w", err)
	}
	if _, off := time.Date(2024, 7, 1, 12, 0, 0, 0, loc).Zone(); off != -4*3600 {
		return fmt.Errorf("time zone data: New York summer offset %d, want -14400", off)
	}
	f, err := os.CreateTemp("/tmp", "selfcheck-")
	if err != nil {
		return fmt.Errorf("/tmp is not writable: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	if err := os.WriteFile("/usr/local/bin/overwritten", []byte("x"), 0o644); err == nil {
		return fmt.Errorf("the image user can change the binaries")
	}
	// The home directory belongs to the image user, so only a read-only root
	// file system (as Kubernetes mounts it with readOnlyRootFilesystem)
	// refuses this write.
	if err := os.WriteFile("/home/nonroot/probe", []byte("x"), 0o600); !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("writing to the home directory: got %v, want a read-only file system", err)
	}
	return nil
}
