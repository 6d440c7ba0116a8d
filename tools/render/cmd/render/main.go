// Command render pins the image placeholders of manifests to digests.
//
//	render --repository ghcr.io/kubeopencode --digests out/images manifests/ > kubeopencode.yaml
//	render --repository localhost:5001/kubeopencode \
//	    --digest controller=bazel-bin/controller_index.json.sha256 ... -o out/manifests manifests/
//
// Without -o it writes one multi-document stream to stdout; with -o it writes
// each input file to the same relative path under the directory.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		repository = fs.String("repository", "", "prefix the images were pushed under, for example ghcr.io/kubeopencode (required)")
		digestDirs listFlag
		digests    listFlag
		outDir     = fs.String("o", "", "write rendered files under this directory instead of one stream to stdout")
	)
	fs.Var(&digestDirs, "digests", "directory holding <image>.digest files, as the Go-native builder writes them (repeatable)")
	fs.Var(&digests, "digest", "image=FILE: the digest file of one image, such as Bazel's <image>_index.json.sha256 (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: render --repository PREFIX (--digests DIR | --digest IMAGE=FILE...) [-o DIR] MANIFEST_FILE_OR_DIR...\nplaceholders: %s<image> for images %s\n", images.PlaceholderPrefix, strings.Join(images.Names(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repository == "" {
		return fmt.Errorf("--repository is required: the prefix the images were pushed under")
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("name the manifest files or directories to render")
	}

	r := render.Renderer{Repository: *repository, Digests: map[string]string{}}
	for _, d := range digestDirs {
		found, err := render.ReadDigestDir(d)
		if err != nil {
			return err
		}
		for k, v := range found {
			r.Digests[k] = v
		}
	}
	for _, d := range digests {
		img, file, ok := strings.Cut(d, "=")
		if !ok {
			return fmt.Errorf("--digest %q: want image=FILE", d)
		}
		if _, err := images.ByName(img); err != nil {
			return fmt.Errorf("--digest %q: %w", d, err)
		}
		digest, err := render.ReadDigestFile(file)
		if err != nil {
			return err
		}
		r.Digests[img] = digest
	}

	files, err := render.Collect(fs.Args())
	if err != nil {
		return err
	}
	rendered, err := r.RenderFiles(files)
	if err != nil {
		return err
	}
	if *outDir == "" {
		_, err := stdout.Write(render.Stream(rendered))
		return err
	}
	for _, f := range rendered {
		p := filepath.Join(*outDir, f.Rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
