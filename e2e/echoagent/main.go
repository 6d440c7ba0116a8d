// Command echoagent stands in for an AI coding agent in the real-node tests:
// it reports what a Task's pod gives an agent (its identity, workspace,
// files and environment), edits files to prove they are writable, and ends
// with a chosen exit code. Each argument is one step, run in order:
//
//	id              the process's uid, gid and supplementary groups
//	tree            every entry under $WORKSPACE_DIR (not inside .git) with mode, owner and size
//	stat=PATH       one entry, as tree prints it
//	gitblobs=DIR    every file and symlink under DIR (not inside .git) as
//	                git would record it: mode, blob name and quoted path
//	cat=PATH        the file's content between "== cat PATH" and "== end PATH"
//	env=NAME        the variable's value, or that it is unset
//	append=PATH:TXT appends TXT and a newline to PATH (created if missing)
//	sleep=DURATION  waits, e.g. sleep=30s
//	dial=HOST:PORT  opens a TCP connection (3s at most) and prints "== dial
//	                HOST:PORT ok" or "== dial HOST:PORT failed: ERROR"; a
//	                connection that fails is reported, not a failed step
//	exit=N          exits with N at once
//
// Relative paths are taken from the working directory, which the Job sets to
// the workspace. Without arguments it runs "id tree cat=task.md". Lines it
// writes start with "== " so that tests can tell them from file content. It
// exits with $EXIT_CODE (default 0) after the last step, 3 when a step
// fails, and 143 on SIGTERM.
package main

import (
	"crypto/sha1" //nolint:gosec // Git object names
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// PID 1 in its container: without a handler of its own, SIGTERM from the
	// kubelet would be reported as a crash instead of a prompt, clean stop.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("== signal terminated")
		os.Exit(143)
	}()

	steps := os.Args[1:]
	if len(steps) == 0 {
		steps = []string{"id", "tree", "cat=task.md"}
	}
	fmt.Printf("== start %d\n", time.Now().UnixNano())
	for _, s := range steps {
		if err := step(s); err != nil {
			fmt.Printf("== error %s: %v\n", s, err)
			os.Exit(3)
		}
	}
	code := 0
	if v := os.Getenv("EXIT_CODE"); v != "" {
		code, _ = strconv.Atoi(v)
	}
	fmt.Printf("== finish %d\n", time.Now().UnixNano())
	os.Exit(code)
}

func step(s string) error {
	verb, arg, _ := strings.Cut(s, "=")
	switch verb {
	case "id":
		groups, _ := os.Getgroups()
		fmt.Printf("== id uid=%d gid=%d groups=%v\n", os.Getuid(), os.Getgid(), groups)
	case "tree":
		root := os.Getenv("WORKSPACE_DIR")
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := stat(p); err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".git" {
				return fs.SkipDir
			}
			return nil
		})
	case "stat":
		return stat(arg)
	case "gitblobs":
		return gitBlobs(arg)
	case "cat":
		data, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		fmt.Printf("== cat %s\n%s", arg, data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			fmt.Println()
		}
		fmt.Printf("== end %s\n", arg)
	case "env":
		if v, ok := os.LookupEnv(arg); ok {
			fmt.Printf("== env %s=%s\n", arg, v)
		} else {
			fmt.Printf("== env %s unset\n", arg)
		}
	case "append":
		p, text, _ := strings.Cut(arg, ":")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(f, text); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Printf("== appended %s\n", p)
	case "sleep":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return err
		}
		time.Sleep(d)
	case "dial":
		conn, err := net.DialTimeout("tcp", arg, 3*time.Second)
		if err != nil {
			fmt.Printf("== dial %s failed: %v\n", arg, err)
			return nil
		}
		conn.Close()
		fmt.Printf("== dial %s ok\n", arg)
	case "exit":
		code, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		fmt.Printf("== exit %d\n", code)
		os.Exit(code)
	default:
		return fmt.Errorf("unknown step %q", verb)
	}
	return nil
}

// stat prints "== stat PATH MODE UID:GID SIZE", with " -> TARGET" for a symlink.
func stat(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	line := fmt.Sprintf("== stat %s %s %d:%d %d", p, fi.Mode(), st.Uid, st.Gid, fi.Size())
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(p)
		line += " -> " + target
	}
	fmt.Println(line)
	return nil
}

// gitBlobs prints "== blob MODE SHA QUOTED-PATH" for every file and
// symlink under root, with the blob name git gives its content (a
// symlink's content is its target), so that a test can compare the
// checkout the agent sees with the commit.
func gitBlobs(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var data []byte
		mode := "100644"
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			data, mode = []byte(target), "120000"
		default:
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
			if fi.Mode()&0o100 != 0 {
				mode = "100755"
			}
		}
		h := sha1.New() //nolint:gosec
		fmt.Fprintf(h, "blob %d\x00", len(data))
		h.Write(data)
		rel, _ := filepath.Rel(root, p)
		fmt.Printf("== blob %s %x %s\n", mode, h.Sum(nil), strconv.Quote(rel))
		return nil
	})
}
