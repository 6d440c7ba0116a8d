"""Rules shared by every KubeOpenCode Go binary.

Gazelle writes `kubeopencode_go_binary` wherever it would write `go_binary`
(see the map_kind directive in the root BUILD.bazel), so each binary of the
repository is built the way the images need it without hand edits to
generated files.
"""

load("@rules_go//go:def.bzl", "go_binary")

def kubeopencode_go_binary(name, **kwargs):
    """A go_binary that is pure Go, statically linked and version-stamped.

    Args:
      name: the target name Gazelle chose (the directory name).
      **kwargs: attributes Gazelle manages (embed, visibility, ...).
    """
    go_binary(
        name = name,
        # No cgo and no dynamic linking: the binary runs on a base without libc.
        pure = "on",
        static = "on",
        # Filled from tools/bazel/workspace_status.sh under --stamp; left at
        # the binary's default ("dev") otherwise, so unstamped builds stay cacheable.
        x_defs = {"github.com/kubeopencode/kubeopencode/internal/version.Version": "{STABLE_VERSION}"},
        **kwargs
    )
