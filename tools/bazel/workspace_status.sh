#!/usr/bin/env bash
# Stamp values for `bazel build --stamp` (see .bazelrc). STABLE_ keys
# invalidate stamped actions when they change; they fill the version
# variable of every binary and the version/revision labels of every image.
set -euo pipefail
echo "STABLE_VERSION $(git describe --tags --always 2>/dev/null || echo 0.0.0-dev)"
echo "STABLE_GIT_COMMIT $(git rev-parse HEAD 2>/dev/null || echo unknown)"
