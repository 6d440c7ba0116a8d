// Command agent-opencode is the entrypoint of the agent-opencode image: it
// runs OpenCode on the Task's task.md in the workspace, prints what the
// agent did (its text, tool calls and their results) and exits 0 only when
// the work was done (see agentimages/opencode for how that is decided).
// When it was not, the reason goes to the container's termination message,
// which the controller puts on the Task.
//
// Its last line is the results line (api/contract): the final answer, the
// model usage and cost OpenCode reported, the last pull request URL and the
// Git facts of every checkout listed in KUBEOPENCODE_GIT_CONTEXTS. Every
// other line it prints, OpenCode's own output included, is redacted
// (credentials of the environment, URL userinfo), escaped and starts with
// one of its prefixes or an indent, so that nothing the agent prints can
// pass for the results line.
//
// Environment:
//
//	TASK_FILE       the prompt (set by the controller; default $WORKSPACE_DIR/task.md)
//	WORKSPACE_DIR   where OpenCode runs (set by the controller; default the working directory)
//	KUBEOPENCODE_GIT_CONTEXTS  the Git contexts' checkouts (set by the controller)
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
	"sync"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/agentimages/gitfacts"
	"github.com/kubeopencode/kubeopencode/agentimages/opencode"
	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/version"
)

// terminationLog is where Kubernetes reads a container's termination message.
const terminationLog = "/dev/termination-log"

// Prefixes of the launcher's own lines.
const (
	prefixLauncher = "agent-opencode: "
	prefixStderr   = "[opencode stderr] "
	prefixAnswer   = "agent-opencode: final answer: "
)

// StartedPrefix starts the launcher's first line, followed by the time it
// started (RFC 3339, nanoseconds): where a Task's own work begins.
const StartedPrefix = prefixLauncher + "started at "

// gitFactsAfterStop bounds the time the Git facts may take after a stop:
// the pod's grace period is running.
const gitFactsAfterStop = 10 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println(version.Version)
		return
	}
	t := opencode.NewTranscript(os.Stdout, opencode.NewRedactor(os.Environ()))
	code, problem, results := run(t)
	if problem != "" {
		problem = t.Inline(problem)
		t.Print(prefixLauncher, problem)
		_ = os.WriteFile(terminationLog, []byte(problem), 0o644)
	}
	if results != nil {
		// As PID 1 (the container's first process), end every other
		// process of the container first: nothing the agent left running
		// can print after the results line.
		if os.Getpid() == 1 {
			_ = syscall.Kill(-1, syscall.SIGKILL)
		}
		// A line break first, so that the results line starts a line
		// even after a partial line another process wrote.
		_, _ = io.WriteString(os.Stdout, "\n")
		if err := t.PrintResults(results); err != nil {
			t.Print(prefixLauncher, "cannot print the results: "+err.Error())
		}
	}
	os.Exit(code)
}

func run(t *opencode.Transcript) (int, string, *contract.AgentResults) {
	t.Print(StartedPrefix, time.Now().UTC().Format(time.RFC3339Nano))
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
		return 2, fmt.Sprintf("cannot read the Task's prompt: %v", err), nil
	}
	if strings.TrimSpace(string(prompt)) == "" {
		return 2, fmt.Sprintf("the Task's prompt %s is empty: give the Task a description", taskFile), nil
	}
	contexts, err := gitfacts.ParseContexts(os.Getenv(contract.EnvGitContexts))
	if err != nil {
		t.Print(prefixLauncher, err.Error())
	}
	// The commits the agent starts from: what git-init checked out.
	facts := gitfacts.Start(context.Background(), contexts)

	bin := os.Getenv("OPENCODE_BIN")
	if bin == "" {
		bin = "opencode"
	}
	args := []string{"run", "--format", "json"}
	if m := os.Getenv("OPENCODE_MODEL"); m != "" {
		args = append(args, "--model", m)
	}
	t.Printf(prefixLauncher, "running OpenCode in %s on %s (%d bytes)", dir, taskFile, len(prompt))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	// OpenCode takes a non-terminal stdin as the message, byte for byte.
	// (A message given as arguments is re-quoted when it holds spaces,
	// which would change the prompt.)
	pf, err := os.Open(taskFile)
	if err != nil {
		return 2, fmt.Sprintf("cannot read the Task's prompt: %v", err), nil
	}
	defer pf.Close()
	cmd.Stdin = pf
	events, err := cmd.StdoutPipe()
	if err != nil {
		return 2, err.Error(), nil
	}
	errs, err := cmd.StderrPipe()
	if err != nil {
		return 2, err.Error(), nil
	}
	if err := cmd.Start(); err != nil {
		return 2, fmt.Sprintf("cannot start OpenCode: %v", err), nil
	}
	// Pass a stop on to OpenCode and let it end its session.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case s := <-sigs:
			close(stopped)
			_ = cmd.Process.Signal(s)
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = t.CopyLines(errs, prefixStderr)
	}()
	verdict := t.Follow(events)
	wg.Wait()
	err = cmd.Wait()
	t.Printf(prefixLauncher, "%d model steps, tools run: %s", verdict.Steps, strings.Join(verdict.ToolCalls, ", "))
	if verdict.FinalText != "" {
		t.Print(prefixAnswer, verdict.FinalText)
	}

	factsCtx := context.Background()
	select {
	case <-stopped:
		var cancelFacts context.CancelFunc
		factsCtx, cancelFacts = context.WithTimeout(factsCtx, gitFactsAfterStop)
		defer cancelFacts()
	default:
	}
	results := &contract.AgentResults{
		Summary:        t.Summary(verdict.FinalText),
		PullRequestURL: verdict.PullRequestURL,
		Repositories:   facts.Results(factsCtx),
	}
	if verdict.Usage != (contract.Usage{}) {
		u := verdict.Usage
		results.Usage = &u
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
		return code, problem, results
	case err != nil:
		return 2, fmt.Sprintf("OpenCode: %v", err), results
	case !verdict.OK():
		return 1, "OpenCode exited 0 but the Task's work was not done: " + verdict.Problem, results
	}
	return 0, "", results
}
