// Package render replaces the image placeholders of manifests/ with
// digest-pinned references. Both build pipelines use it: the Go-native
// builder and Bazel's rules_oci each write a `.digest` file per image, and
// the same code turns "kubeopencode.io/image/controller" into
// "ghcr.io/kubeopencode/controller@sha256:...". It refuses to leave a
// placeholder behind, so a rendered manifest never deploys an unpinned image.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

var (
	placeholderRE = regexp.MustCompile(regexp.QuoteMeta(images.PlaceholderPrefix) + `[A-Za-z0-9._-]*`)
	digestRE      = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Renderer knows where each image was pushed.
type Renderer struct {
	// Repository is the prefix images are pushed under, for example
	// "ghcr.io/kubeopencode" for "ghcr.io/kubeopencode/controller".
	Repository string
	// Digests maps an image name to the digest of its index ("sha256:...").
	Digests map[string]string
}

// Reference returns the digest-pinned reference of the named image.
func (r Renderer) Reference(imageName string) (string, error) {
	img, err := images.ByName(imageName)
	if err != nil {
		return "", err
	}
	d, ok := r.Digests[img.Name]
	if !ok {
		return "", fmt.Errorf("no digest for image %s: pass %s (from either build pipeline) with --digests or --digest %s=FILE", img.Name, img.Name+".digest", img.Name)
	}
	ref, err := name.NewDigest(img.Repository(r.Repository) + "@" + d)
	if err != nil {
		return "", fmt.Errorf("image %s: repository prefix %q does not make a valid reference: %w", img.Name, r.Repository, err)
	}
	return ref.String(), nil
}

// Render returns content with every placeholder replaced. file names the
// content in errors. All problems are reported together, each with its line.
func (r Renderer) Render(file string, content []byte) ([]byte, error) {
	var (
		errs []error
		out  bytes.Buffer
		last int
	)
	for _, loc := range placeholderRE.FindAllIndex(content, -1) {
		start, end := loc[0], loc[1]
		placeholder := string(content[start:end])
		line := 1 + bytes.Count(content[:start], []byte("\n"))
		out.Write(content[last:start])
		last = end
		if end < len(content) && (content[end] == ':' || content[end] == '@') {
			errs = append(errs, fmt.Errorf("%s:%d: placeholder %s is followed by a tag or digest: write the placeholder alone, the renderer pins it", file, line, placeholder))
			continue
		}
		ref, err := r.Reference(strings.TrimPrefix(placeholder, images.PlaceholderPrefix))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: placeholder %s: %w", file, line, placeholder, err))
			continue
		}
		out.WriteString(ref)
	}
	out.Write(content[last:])
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out.Bytes(), nil
}

// ReadDigestFile reads a digest file as rules_oci and the Go-native builder
// write it: "sha256:<64 hex digits>", optionally followed by a newline.
func ReadDigestFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	d := strings.TrimSpace(string(data))
	if !digestRE.MatchString(d) {
		return "", fmt.Errorf("%s: %q is not a digest: want sha256:<64 hex digits>", path, d)
	}
	return d, nil
}

// ReadDigestDir reads <image>.digest for every image present in dir, the
// layout the Go-native builder writes (out/images by default).
func ReadDigestDir(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, img := range images.Buildable() {
		p := filepath.Join(dir, img.Name+".digest")
		d, err := ReadDigestFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[img.Name] = d
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no <image>.digest file: build the images first", dir)
	}
	return out, nil
}

// File is one input manifest and where it came from.
type File struct {
	// Rel is the path relative to the input it was found under.
	Rel     string
	Path    string
	Content []byte
}

// Collect reads the YAML files named by inputs: files as given, directories
// walked for *.yaml and *.yml in lexical order.
func Collect(inputs []string) ([]File, error) {
	var files []File
	for _, in := range inputs {
		info, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			data, err := os.ReadFile(in)
			if err != nil {
				return nil, err
			}
			files = append(files, File{Rel: filepath.Base(in), Path: in, Content: data})
			continue
		}
		var found []File
		err = filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(in, p)
			if err != nil {
				return err
			}
			found = append(found, File{Rel: rel, Path: p, Content: data})
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Slice(found, func(i, j int) bool { return found[i].Rel < found[j].Rel })
		files = append(files, found...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no YAML manifests in %s", strings.Join(inputs, ", "))
	}
	return files, nil
}

// InstallFiles keeps the files of manifests/ that install KubeOpenCode, the
// set //:install_manifests globs in Bazel: everything but the Argo Events
// and Argo Workflows examples, the samples and kustomization files. files are as Collect
// returns them for the manifests/ directory.
func InstallFiles(files []File) []File {
	var out []File
	for _, f := range files {
		rel := filepath.ToSlash(f.Rel)
		if strings.HasPrefix(rel, "argo-events/") || strings.HasPrefix(rel, "argo-workflows/") || strings.HasPrefix(rel, "samples/") || filepath.Base(rel) == "kustomization.yaml" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// RenderFiles renders every file and reports all unresolved placeholders of
// all files together.
func (r Renderer) RenderFiles(files []File) ([]File, error) {
	var errs []error
	out := make([]File, 0, len(files))
	for _, f := range files {
		rendered, err := r.Render(f.Path, f.Content)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, File{Rel: f.Rel, Path: f.Path, Content: rendered})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Stream joins files into one multi-document YAML stream, the form
// `kubectl apply -f` takes. kubectl applies a stream in order and refuses an
// object whose Namespace or kind does not exist yet, so every Namespace comes
// first, then every CustomResourceDefinition, then the other documents in
// their input order.
func Stream(files []File) []byte {
	type doc struct {
		source string
		body   []byte
		rank   int
	}
	var docs []doc
	for _, f := range files {
		for _, body := range splitDocuments(f.Content) {
			docs = append(docs, doc{source: filepath.ToSlash(f.Path), body: body, rank: installRank(body)})
		}
	}
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].rank < docs[j].rank })
	var b bytes.Buffer
	for _, d := range docs {
		fmt.Fprintf(&b, "---\n# Source: %s\n", d.source)
		b.Write(d.body)
		if !bytes.HasSuffix(d.body, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

var (
	separatorRE = regexp.MustCompile(`(?m)^---[ \t]*(?:#.*)?$\n?`)
	kindRE      = regexp.MustCompile(`(?m)^kind:[ \t]*["']?([A-Za-z0-9]+)`)
)

// splitDocuments cuts a YAML stream at its "---" lines. A part holding only
// comments stays with the document after it; documents without content are
// dropped.
func splitDocuments(content []byte) [][]byte {
	var out [][]byte
	var pending []byte
	for _, part := range separatorRE.Split(string(content), -1) {
		body := append(pending, part...)
		if !hasContent(body) {
			pending = body
			continue
		}
		pending = nil
		out = append(out, body)
	}
	return out
}

func hasContent(body []byte) bool {
	for _, line := range strings.Split(string(body), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// installRank orders the documents of a stream for kubectl apply.
func installRank(body []byte) int {
	m := kindRE.FindSubmatch(body)
	if m == nil {
		return 2
	}
	switch string(m[1]) {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	}
	return 2
}
