package imagebuilder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// goBuild compiles a main package into a static binary for one platform and
// returns its contents. It runs the go command of the machine, so the build
// cache ($GOCACHE) is shared with every other build.
//
// The flags are what make the binary reproducible: -trimpath removes the
// build directory from file names, -buildvcs=false keeps the state of the work
// tree out (the revision goes to an image label instead), and CGO_ENABLED=0
// leaves no dependency on the C toolchain or libc of the builder.
func (b *Builder) goBuild(ctx context.Context, importPath string, p images.Platform) ([]byte, error) {
	out, err := os.MkdirTemp("", "imagebuilder-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	bin := filepath.Join(out, "app")

	ldflags := "-s -w -X " + images.VersionSymbol + "=" + b.Version
	cmd := exec.CommandContext(ctx, b.goCommand(), "build",
		"-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", bin, importPath)
	cmd.Dir = b.ModuleDir
	cmd.Env = append(append(os.Environ(), b.Env...), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w\n%s", importPath, p, err, strings.TrimSpace(stderr.String()))
	}
	return os.ReadFile(bin)
}

func (b *Builder) goCommand() string {
	if b.Go != "" {
		return b.Go
	}
	return "go"
}

// GoEnv returns one value of `go env`.
func (b *Builder) goEnv(ctx context.Context, key string) (string, error) {
	out, err := exec.CommandContext(ctx, b.goCommand(), "env", key).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", key, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ZoneInfoZip reads the time zone database shipped with the Go toolchain.
func (b *Builder) ZoneInfoZip(ctx context.Context) ([]byte, error) {
	root, err := b.goEnv(ctx, "GOROOT")
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, "lib", "time", "zoneinfo.zip"))
	if err != nil {
		return nil, fmt.Errorf("the Go toolchain at %s has no time zone database: %w", root, err)
	}
	return data, nil
}
