// Command agentlayers writes the layers of the agent image that come from
// pinned packages (Debian packages, OpenCode, its configuration) as tar
// files, from package files already downloaded. The Bazel pipeline runs it
// on the files its http_file repositories fetched; each file is matched to
// its pin in tools/images by checksum.
//
//	agentlayers --arch amd64 --out-dir DIR FILE...
//
// writes DIR/debian.tar, DIR/opencode.tar and DIR/config.tar.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

func main() {
	arch := flag.String("arch", "", "architecture: amd64 or arm64")
	outDir := flag.String("out-dir", "", "directory to write debian.tar, opencode.tar and config.tar to")
	flag.Parse()
	if err := run(*arch, *outDir, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "agentlayers:", err)
		os.Exit(1)
	}
}

func run(arch, outDir string, files []string) error {
	if arch == "" || outDir == "" {
		return fmt.Errorf("--arch and --out-dir are required")
	}
	in, err := imagebuilder.ReadFiles(files)
	if err != nil {
		return err
	}
	ctx := context.Background()
	epoch, err := imagebuilder.SourceDateEpoch(ctx, ".")
	if err != nil {
		return err
	}
	layers, err := imagebuilder.AgentLayerTars(ctx, in, images.Platform{OS: "linux", Arch: arch}, epoch)
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := os.WriteFile(filepath.Join(outDir, l.Name+".tar"), l.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
