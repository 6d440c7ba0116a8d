package gitinit

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// maxSubmoduleDepth bounds nesting (and cycles) of submodules.
const maxSubmoduleDepth = 8

// maxLeftOut is how many left-out submodules the Result lists: the
// termination message holds at most 4096 bytes.
const maxLeftOut = 20

// checkoutSubmodules clones every gitlink of the checked-out commit into
// its directory at the recorded commit, with the same depth, recursively.
// Each submodule gets a .git directory of its own (a layout the git CLI
// understands). Credentials go only to the parent repository's host.
func (r *run) checkoutSubmodules(ctx context.Context, repo *git.Repository, commit plumbing.Hash) error {
	if len(r.submodules) == 0 {
		return nil
	}
	c, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	modules, err := readGitmodules(c)
	if err != nil {
		return err
	}
	for _, s := range r.submodules {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := modules[s.Path]
		if m == nil || m.URL == "" {
			return &checkoutError{fmt.Sprintf("submodule %s (commit %s) has no URL in .gitmodules of commit %s: fix .gitmodules or set the Git context's submodules to false", quotePath(s.Path), s.Commit, commit)}
		}
		subURL, err := resolveSubmoduleURL(r.url, m.URL)
		if err != nil {
			return &checkoutError{fmt.Sprintf("submodule %s: %v", quotePath(s.Path), err)}
		}
		if r.level >= maxSubmoduleDepth {
			return &checkoutError{fmt.Sprintf("submodule %s (%s) is nested more than %d levels deep: set the Git context's submodules to false", quotePath(s.Path), subURL, maxSubmoduleDepth)}
		}
		plan := &contract.GitPlan{
			Version:    contract.Version,
			Repository: subURL,
			Ref:        s.Commit.String(),
			Depth:      r.plan.Depth,
			Dest:       filepath.Join(r.plan.Dest, filepath.FromSlash(s.Path)),
			Submodules: true,
		}
		if sameHost(r.url, subURL) {
			plan.CredentialsDir = r.plan.CredentialsDir
		}
		r.logf("checking out submodule %s from %s at commit %s", s.Path, subURL, s.Commit)
		sub, err := newRun(plan, r.opts, &redactor{})
		if err != nil {
			return &checkoutError{fmt.Sprintf("submodule %s: %v", quotePath(s.Path), err)}
		}
		sub.level = r.level + 1
		if _, err := sub.cloneWithRetry(ctx); err != nil {
			// Already retried inside; the parent does not retry again.
			return &checkoutError{fmt.Sprintf("submodule %s (%s at commit %s): %v", quotePath(s.Path), subURL, s.Commit, err)}
		}
	}
	return nil
}

// readGitmodules returns the commit's .gitmodules by submodule path.
func readGitmodules(c *object.Commit) (map[string]*config.Submodule, error) {
	out := map[string]*config.Submodule{}
	f, err := c.File(".gitmodules")
	if err != nil {
		return out, nil //nolint:nilerr // no .gitmodules: every gitlink lacks a URL
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, 1<<20))
	if err != nil {
		return nil, err
	}
	m := config.NewModules()
	if err := m.Unmarshal(data); err != nil {
		return nil, &checkoutError{fmt.Sprintf(".gitmodules of commit %s cannot be parsed (%v): fix it or set the Git context's submodules to false", c.Hash, err)}
	}
	for _, s := range m.Submodules {
		out[path.Clean(s.Path)] = s
	}
	return out, nil
}

// resolveSubmoduleURL resolves a .gitmodules URL against the parent's URL
// as git does: "./x" and "../x" are relative to the parent repository.
func resolveSubmoduleURL(parent, raw string) (string, error) {
	if !strings.HasPrefix(raw, "./") && !strings.HasPrefix(raw, "../") {
		if _, _, _, err := parseRepository(raw); err != nil {
			return "", err
		}
		return raw, nil
	}
	base, rest := parent, raw
	// scp-like user@host:path has no scheme; split off the path.
	prefix := ""
	if !strings.Contains(base, "://") {
		if i := strings.Index(base, ":"); i >= 0 {
			prefix, base = base[:i+1], base[i+1:]
		}
	} else {
		u, err := url.Parse(base)
		if err != nil {
			return "", err
		}
		prefix = strings.TrimSuffix(u.Scheme+"://"+u.Host, "/")
		base = u.Path
	}
	base = strings.TrimSuffix(base, "/")
	for {
		switch {
		case strings.HasPrefix(rest, "./"):
			rest = rest[2:]
			continue
		case strings.HasPrefix(rest, "../"):
			rest = rest[3:]
			i := strings.LastIndex(base, "/")
			if i < 0 {
				if base == "" {
					return "", fmt.Errorf("URL %q leads above the root of %s", raw, parent)
				}
				base = ""
			} else {
				base = base[:i]
			}
			continue
		}
		break
	}
	joined := base + "/" + rest
	if prefix != "" && !strings.Contains(prefix, "://") && strings.HasPrefix(joined, "/") && !strings.HasPrefix(base, "/") {
		joined = strings.TrimPrefix(joined, "/")
	}
	return prefix + joined, nil
}

// sameHost reports whether two repository URLs name the same host (and
// port), so that the parent's credentials may be sent to the submodule.
func sameHost(a, b string) bool {
	ea, err1 := transport.NewEndpoint(a)
	eb, err2 := transport.NewEndpoint(b)
	return err1 == nil && err2 == nil && ea.Host == eb.Host && ea.Port == eb.Port && ea.Protocol == eb.Protocol
}
