// Command agent-opencode is the entrypoint of the agent-opencode image: it
// runs OpenCode on the Task's task.md in the workspace, prints what the
// agent did (its text, tool calls and their results) and exits 0 only when
// the work was done (see agentimages/opencode for how that is decided).
// When it was not, the reason goes to the container's termination message,
// which the controller puts on the Task.
//
// Environment:
//
//	TASK_FILE       the prompt (set by the controller; default $WORKSPACE_DIR/task.md)
//	WORKSPACE_DIR   where OpenCode runs (set by the controller; default the working directory)
//	OPENCODE_MODEL  provider/model to use, for example anthropic/claude-sonnet-4-5 (optional)
//	OPENCODE_CONFIG_CONTENT  OpenCode configuration (JSON) applied over the image's,
//	                for example a provider with its baseURL (optional)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/agentimages/opencode"
	"github.com/kubeopencode/kubeopencode/internal/version"
)

// terminationLog is where Kubernetes reads a container's termination message.
const terminationLog = "/dev/termination-log"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println(version.Version)
		return
	}
	code, problem := run(os.Stdout, os.Stderr)
	if problem != "" {
		fmt.Fprintln(os.Stderr, "agent-opencode: "+problem)
		_ = os.WriteFile(terminationLog, []byte(problem), 0o644)
	}
	os.Exit(code)
}

// StartedPrefix starts the launcher's first line, followed by the time it
// started (RFC 3339, nanoseconds): where a Task's own work begins.
const StartedPrefix = "agent-opencode: started at "

func run(stdout, stderr io.Writer) (int, string) {
	fmt.Fprintf(stdout, "%s%s\n", StartedPrefix, time.Now().UTC().Format(time.RFC3339Nano))
	dir := os.Getenv("WORKSPACE_DIR")
	if dir == "" {
		dir, _ = os.Getwd()
	}
	taskFile := os.Getenv("TASK_FILE")
	if taskFile == "" {
		taskFile = filepath.Join(dir, "task.md")
	}
	prompt, err := os.ReadFile(taskFile)
	if err != nil {
		return 2, fmt.Sprintf("cannot read the Task's prompt: %v", err)
	}
	if strings.TrimSpace(string(prompt)) == "" {
		return 2, fmt.Sprintf("the Task's prompt %s is empty: give the Task a description", taskFile)
	}
	bin := os.Getenv("OPENCODE_BIN")
	if bin == "" {
		bin = "opencode"
	}
	args := []string{"run", "--format", "json"}
	if m := os.Getenv("OPENCODE_MODEL"); m != "" {
		args = append(args, "--model", m)
	}
	fmt.Fprintf(stdout, "agent-opencode: running OpenCode in %s on %s (%d bytes)\n", dir, taskFile, len(prompt))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	// OpenCode takes a non-terminal stdin as the message, byte for byte.
	// (A message given as arguments is re-quoted when it holds spaces,
	// which would change the prompt.)
	pf, err := os.Open(taskFile)
	if err != nil {
		return 2, fmt.Sprintf("cannot read the Task's prompt: %v", err)
	}
	defer pf.Close()
	cmd.Stdin = pf
	cmd.Stderr = stderr
	events, err := cmd.StdoutPipe()
	if err != nil {
		return 2, err.Error()
	}
	if err := cmd.Start(); err != nil {
		return 2, fmt.Sprintf("cannot start OpenCode: %v", err)
	}
	// Pass a stop on to OpenCode and let it end its session.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-ctx.Done():
		}
	}()
	verdict := opencode.Follow(events, stdout)
	err = cmd.Wait()
	fmt.Fprintf(stdout, "agent-opencode: %d model steps, tools run: %s\n", verdict.Steps, strings.Join(verdict.ToolCalls, ", "))
	if verdict.FinalText != "" {
		fmt.Fprintf(stdout, "agent-opencode: final answer:\n%s\n", verdict.FinalText)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code := exit.ExitCode()
		if code < 0 {
			code = 128 + int(exit.Sys().(syscall.WaitStatus).Signal())
		}
		problem := fmt.Sprintf("OpenCode exited with code %d", code)
		if verdict.Problem != "" {
			problem += ": " + verdict.Problem
		}
		return code, problem
	case err != nil:
		return 2, fmt.Sprintf("OpenCode: %v", err)
	case !verdict.OK():
		return 1, "OpenCode exited 0 but the Task's work was not done: " + verdict.Problem
	}
	return 0, ""
}
