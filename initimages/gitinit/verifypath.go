package gitinit

import "strings"

// verifyPath reports whether the git CLI on Linux would check out a tree
// entry at path (slash-separated, relative to the worktree) with the given
// mode. It follows git's verify_path with its Linux defaults
// (core.protectNTFS on, core.protectHFS off): components "", "." and "..",
// ".git" in any letter case, NTFS spellings of ".git" (".git.", ".git ",
// "git~1", ".git::$INDEX_ALLOCATION", ...) and, for symlinks, NTFS spellings
// of ".gitmodules" are refused. Names that Windows reserves ("aux.c",
// "con.txt", "NUL"), names with tabs, newlines or backslashes are accepted,
// as git accepts them on Linux.
func verifyPath(path string, symlink bool) bool {
	if path == "" {
		return false
	}
	i := 0
	for {
		// i is at the start of a component.
		rest := path[i:]
		if isNTFSDotGit(rest) {
			return false
		}
		if symlink && isNTFSDotGitmodules(rest) {
			return false
		}
		if rest == "" || rest[0] == '/' {
			return false // empty component
		}
		if rest[0] == '.' && !verifyDotfile(rest[1:], symlink) {
			return false
		}
		// Scan to the end of the component; after each backslash git
		// checks the NTFS spellings again, since Windows would take the
		// backslash as a separator.
		j := 0
		for ; j < len(rest) && rest[j] != '/'; j++ {
			if rest[j] == '\\' {
				after := rest[j+1:]
				if isNTFSDotGit(after) || symlink && isNTFSDotGitmodules(after) {
					return false
				}
			}
		}
		if j == len(rest) {
			return true
		}
		i += j + 1
	}
}

// verifyDotfile checks a component that starts with a dot; rest follows the
// dot. It mirrors git's verify_dotfile.
func verifyDotfile(rest string, symlink bool) bool {
	if rest == "" || rest[0] == '/' {
		return false // "."
	}
	switch rest[0] {
	case 'g', 'G':
		if len(rest) < 3 || lower(rest[1]) != 'i' || lower(rest[2]) != 't' {
			break
		}
		if len(rest) == 3 || rest[3] == '/' {
			return false // ".git"
		}
		if symlink {
			r := rest[3:]
			if len(r) >= 7 && strings.EqualFold(r[:7], "modules") && (len(r) == 7 || r[7] == '/') {
				return false // ".gitmodules" as a symlink
			}
		}
	case '.':
		if len(rest) == 1 || rest[1] == '/' {
			return false // ".."
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isNTFSDotGit mirrors git's is_ntfs_dotgit: ".git" or "git~1" in any
// case, followed only by spaces and dots up to the end of the component or
// an alternate data stream (":").
func isNTFSDotGit(name string) bool {
	var i int
	switch {
	case len(name) >= 4 && name[0] == '.' && strings.EqualFold(name[1:4], "git"):
		i = 4
	case len(name) >= 5 && strings.EqualFold(name[:3], "git") && name[3] == '~' && name[4] == '1':
		i = 5
	default:
		return false
	}
	for ; i < len(name); i++ {
		c := name[i]
		if c == '/' || c == '\\' || c == ':' {
			return true
		}
		if c != '.' && c != ' ' {
			return false
		}
	}
	return true
}

// isNTFSDotGitmodules mirrors git's is_ntfs_dotgitmodules: ".gitmodules"
// followed only by spaces and dots, its 8.3 short name "gitmod~N" (N 1-4),
// or the fall-back short name "gi7eba~N".
func isNTFSDotGitmodules(name string) bool {
	const long, short = "gitmodules", "gi7eba"
	onlySpacesAndPeriods := func(i int) bool {
		for ; i < len(name); i++ {
			c := name[i]
			if c == ':' {
				return true
			}
			if c != ' ' && c != '.' {
				return false
			}
		}
		return true
	}
	if len(name) >= 1+len(long) && name[0] == '.' && strings.EqualFold(name[1:1+len(long)], long) {
		return onlySpacesAndPeriods(1 + len(long))
	}
	if len(name) >= 8 && strings.EqualFold(name[:6], long[:6]) && name[6] == '~' && name[7] >= '1' && name[7] <= '4' {
		return onlySpacesAndPeriods(8)
	}
	sawTilde := false
	for i := 0; i < 8; i++ {
		if i >= len(name) {
			return false
		}
		c := name[i]
		switch {
		case sawTilde:
			if c < '0' || c > '9' {
				return false
			}
		case c == '~':
			i++
			if i >= len(name) || name[i] < '1' || name[i] > '9' {
				return false
			}
			sawTilde = true
		case i >= 6, c&0x80 != 0:
			return false
		case lower(c) != short[i]:
			return false
		}
	}
	return onlySpacesAndPeriods(8)
}
