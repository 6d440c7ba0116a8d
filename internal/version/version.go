// Package version holds the release of the binaries, stamped at build time
// with -ldflags "-X github.com/kubeopencode/kubeopencode/internal/version.Version=v1.2.3".
package version

// Version is the release the binary was built from; "dev" when unstamped.
var Version = "dev"
