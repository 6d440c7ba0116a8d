package imagebuilder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// SourceDateEpoch returns the timestamp images are stamped with: the
// SOURCE_DATE_EPOCH variable when set (reproducible-builds.org convention),
// else the commit time of HEAD in dir, else the Unix epoch. A build never
// uses the clock, which would make every build differ.
func SourceDateEpoch(ctx context.Context, dir string) (time.Time, error) {
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want whole seconds since 1970 (for example `git log -1 --format=%%ct`)", v)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	if out, err := git(ctx, dir, "log", "-1", "--format=%ct"); err == nil {
		if sec, err := strconv.ParseInt(out, 10, 64); err == nil {
			return time.Unix(sec, 0).UTC(), nil
		}
	}
	return time.Unix(0, 0).UTC(), nil
}

// GitRevision returns the commit of HEAD in dir, or "unknown" outside Git.
func GitRevision(ctx context.Context, dir string) string {
	if out, err := git(ctx, dir, "rev-parse", "HEAD"); err == nil && out != "" {
		return out
	}
	return "unknown"
}

// GitVersion describes HEAD by its nearest tag ("v0.3.0", or
// "v0.3.0-4-gabc1234" past it), the abbreviated commit without tags, or
// "0.0.0-dev" outside Git.
func GitVersion(ctx context.Context, dir string) string {
	if out, err := git(ctx, dir, "describe", "--tags", "--always"); err == nil && out != "" {
		return out
	}
	return "0.0.0-dev"
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}
