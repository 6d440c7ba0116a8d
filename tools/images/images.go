// Package images defines the three KubeOpenCode container images once.
//
// The Go-native builder (tools/imagebuilder), the manifest renderer
// (tools/render) and the Bazel consistency test all read these definitions,
// so the name of an image, the package it is built from, its entrypoint, its
// user, its platforms, its base and its manifest placeholder cannot drift
// apart between the two build pipelines.
package images

import (
	"fmt"
	"sort"
	"strings"
)

// Module is the Go module every image is built from.
const Module = "github.com/kubeopencode/kubeopencode"

// SourceURL is written to the org.opencontainers.image.source label.
const SourceURL = "https://github.com/kubeopencode/kubeopencode"

// User is the numeric user (and group) every image runs as. It is the
// "nonroot" account of the distroless base; numeric so that Kubernetes can
// enforce runAsNonRoot without reading /etc/passwd.
const User = "65532"

// UserID is User as a number, for file ownership and process credentials.
const UserID = 65532

// VersionSymbol is the variable both builders set with the linker's -X
// flag. Every binary prints it for --version.
const VersionSymbol = Module + "/internal/version.Version"

// BinaryDir is the directory that holds the single binary of each image.
const BinaryDir = "/usr/local/bin"

// PlaceholderPrefix starts every image placeholder in manifests/. A
// placeholder is PlaceholderPrefix followed by an image name, for example
// "kubeopencode.io/image/controller". The renderer replaces each with a
// digest-pinned reference and refuses to leave any behind.
const PlaceholderPrefix = "kubeopencode.io/image/"

// Platform is an operating system and CPU architecture an image is built for.
type Platform struct {
	OS   string
	Arch string
}

// String returns the platform as "os/arch", the form used by
// container tooling and by GOOS/GOARCH.
func (p Platform) String() string { return p.OS + "/" + p.Arch }

// BazelPlatform is the rules_go platform label the oci_image_index
// transitions to for this platform.
func (p Platform) BazelPlatform() string {
	return "@rules_go//go/toolchain:" + p.OS + "_" + p.Arch
}

// Platforms lists every platform each image is published for.
var Platforms = []Platform{
	{OS: "linux", Arch: "amd64"},
	{OS: "linux", Arch: "arm64"},
}

// Base is the distroless image every KubeOpenCode image starts from.
type Base struct {
	// Repository is where the base image is published.
	Repository string
	// Tag is the human-readable tag Digest was taken from; it is kept for
	// readers and update tooling, never used to pull.
	Tag string
	// Digest pins the multi-platform index of Repository:Tag.
	Digest string
	// BazelRepo is the name of the oci.pull repository in MODULE.bazel.
	BazelRepo string
}

// Reference is the digest-pinned reference of the base.
func (b Base) Reference() string { return b.Repository + "@" + b.Digest }

// DistrolessStatic is distroless "static" in its nonroot variant: no shell,
// no libc, a passwd entry for 65532, CA certificates and time zone data.
var DistrolessStatic = Base{
	Repository: "gcr.io/distroless/static-debian12",
	Tag:        "nonroot",
	Digest:     "sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639",
	BazelRepo:  "distroless_static",
}

// Image is one KubeOpenCode container image.
type Image struct {
	// Name is the short name: the last element of the repository the image
	// is pushed to, the name of its .digest file and its placeholder suffix.
	Name string
	// MainPackage is the Go import path of the image's only binary.
	MainPackage string
	// Description goes to the org.opencontainers.image.description label.
	Description string
	// ControllerFlag is the controller flag that receives this image's
	// digest-pinned reference; empty for the controller itself.
	ControllerFlag string
	// Agent marks an agent image: besides its Go binary it carries the
	// pinned OpenCode binary and Debian packages of agent.go.
	Agent bool
}

// The three images.
var (
	Controller = Image{
		Name:        "controller",
		MainPackage: Module + "/operator/cmd/controller",
		Description: "KubeOpenCode controller: turns Tasks into Jobs that run AI coding agents",
	}
	GitInit = Image{
		Name:           "git-init",
		MainPackage:    Module + "/initimages/cmd/git-init",
		Description:    "KubeOpenCode git-init: clones the Git contexts of a Task into its workspace",
		ControllerFlag: "git-init-image",
	}
	ContextInit = Image{
		Name:           "context-init",
		MainPackage:    Module + "/initimages/cmd/context-init",
		Description:    "KubeOpenCode context-init: writes the text and ConfigMap contexts of a Task into its workspace",
		ControllerFlag: "context-init-image",
	}
)

// All lists every image in a fixed order.
var All = []Image{Controller, GitInit, ContextInit}

// Agents lists the agent images, which Tasks run rather than the
// controller; they are built and published with the others.
var Agents = []Image{AgentOpenCode}

// Buildable lists every image the builders build: All, then Agents.
func Buildable() []Image { return append(append([]Image(nil), All...), Agents...) }

// ByName returns the image with the given short name.
func ByName(name string) (Image, error) {
	for _, img := range Buildable() {
		if img.Name == name {
			return img, nil
		}
	}
	return Image{}, fmt.Errorf("no image named %q: known images are %s", name, strings.Join(Names(), ", "))
}

// Names returns the short names of all images, sorted.
func Names() []string {
	names := make([]string, 0, len(All)+len(Agents))
	for _, img := range Buildable() {
		names = append(names, img.Name)
	}
	sort.Strings(names)
	return names
}

// BinaryPath is where the image's binary lives inside the image.
func (i Image) BinaryPath() string { return BinaryDir + "/" + i.Name }

// Entrypoint is the image's entrypoint: its binary and nothing else.
func (i Image) Entrypoint() []string { return []string{i.BinaryPath()} }

// Placeholder is the string manifests use where this image's reference goes.
func (i Image) Placeholder() string { return PlaceholderPrefix + i.Name }

// Title is the org.opencontainers.image.title label.
func (i Image) Title() string { return "kubeopencode-" + i.Name }

// Repository is where the image is pushed under the given prefix, for
// example "ghcr.io/kubeopencode" gives "ghcr.io/kubeopencode/controller".
func (i Image) Repository(prefix string) string {
	return strings.TrimSuffix(prefix, "/") + "/" + i.Name
}

// Label keys written to every image's configuration.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelSource      = "org.opencontainers.image.source"
	LabelURL         = "org.opencontainers.image.url"
	LabelVendor      = "org.opencontainers.image.vendor"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
)

// Labels returns the OCI labels of the image built at the given version
// from the given commit.
func (i Image) Labels(version, revision string) map[string]string {
	return map[string]string{
		LabelTitle:       i.Title(),
		LabelDescription: i.Description,
		LabelSource:      SourceURL,
		LabelURL:         SourceURL,
		LabelVendor:      "KubeOpenCode",
		LabelVersion:     version,
		LabelRevision:    revision,
	}
}
