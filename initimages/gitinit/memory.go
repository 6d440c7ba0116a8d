package gitinit

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// blobMemoryFactor bounds the memory go-git needs to decode one blob of
// size n: a blob stored as a delta is rebuilt in memory from its base
// (n) into a new buffer (n), plus the delta and the base's own chain, and
// the checkout hashes it while it is copied out. Measured peaks stay below
// 3n plus a fixed overhead.
const blobMemoryFactor = 3

// memoryOverhead is what git-init needs besides the blob being decoded:
// the runtime, go-git's object cache and the pack index.
const memoryOverhead = 128 << 20

// cgroupMemoryFiles hold the container's memory limit under cgroup v2 and v1.
var cgroupMemoryFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// memoryLimit returns the container's memory limit in bytes, 0 when there
// is none or it cannot be read.
func memoryLimit() int64 {
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		// cgroup v1 reports "no limit" as a huge page-aligned number.
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0
		}
		return n
	}
	return 0
}

// SetRuntimeMemoryLimit tells the Go runtime to collect harder as the
// process nears limit (bytes; 0: no limit), the container's memory limit.
func SetRuntimeMemoryLimit(limit int64) {
	if limit > 0 {
		debug.SetMemoryLimit(limit - limit/10)
	}
}

// maxBlobFor returns the largest blob git-init will decode under the
// memory limit (0: no limit). A larger file fails with a message that
// names it and the limit instead of the kernel's OOM kill.
func maxBlobFor(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	if limit <= memoryOverhead {
		return 1
	}
	return (limit - memoryOverhead) / blobMemoryFactor
}
