package jobbuilder

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// claim is a path in the agent container that one context, credential or
// task.md takes for itself.
type claim struct {
	path  string // absolute, clean
	dir   bool   // a directory (ConfigMap directory, Git checkout, Secret directory)
	owner string // human description for messages
}

// claims detects the placements that would silently overwrite or hide each
// other: the same path twice, a path inside another context's directory or
// checkout (or under another's file), and anything that would hide task.md
// or the workspace itself.
type claims struct {
	workspaceDir string
	list         []claim
}

func newClaims(workspaceDir string) *claims {
	return &claims{workspaceDir: workspaceDir, list: []claim{{
		path:  path.Join(workspaceDir, TaskFileName),
		owner: "task.md",
	}}}
}

func within(p, dir string) bool {
	return dir == "/" || strings.HasPrefix(p, dir+"/")
}

func (c *claims) add(n claim) error {
	if n.path == c.workspaceDir || within(c.workspaceDir, n.path) {
		return fmt.Errorf("%s: mountPath %s would hide the workspace %s and its task.md: choose a path inside the workspace or beside it", n.owner, n.path, c.workspaceDir)
	}
	for _, o := range c.list {
		switch {
		case o.path == n.path && o.owner == "task.md":
			return fmt.Errorf("%s: mountPath %s would overwrite task.md: choose another path", n.owner, n.path)
		case o.path == n.path:
			return fmt.Errorf("%s and %s both write %s: give one of them another mountPath", o.owner, n.owner, n.path)
		case within(n.path, o.path):
			return fmt.Errorf("%s: mountPath %s is inside %s of %s: choose a path outside it", n.owner, n.path, o.path, o.owner)
		case within(o.path, n.path):
			if o.owner == "task.md" {
				return fmt.Errorf("%s: mountPath %s would hide task.md: choose another path", n.owner, n.path)
			}
			return fmt.Errorf("%s: mountPath %s would hide %s of %s: choose a path outside it", n.owner, n.path, o.path, o.owner)
		}
	}
	c.list = append(c.list, n)
	return nil
}

// resolvePath turns a mountPath (absolute, or relative to the workspace)
// into a clean absolute path.
func resolvePath(workspaceDir, mountPath string) string {
	if path.IsAbs(mountPath) {
		return path.Clean(mountPath)
	}
	return path.Join(workspaceDir, mountPath)
}

// inWorkspace returns the path relative to the workspace, if p is inside it.
func inWorkspace(workspaceDir, p string) (string, bool) {
	if within(p, workspaceDir) {
		return strings.TrimPrefix(p, workspaceDir+"/"), true
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
