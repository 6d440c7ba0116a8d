// Command modelserver serves a scripted language model (internal/modelserver)
// for trying an agent without a provider: each request of a conversation is
// answered by the next step of a script file, and every request is printed.
//
//	go run ./tools/modelserver --listen 127.0.0.1:8080 --script steps.json
//
// The script is a JSON list of steps, each {"text": "..."} and/or
// {"toolCalls": [{"name": "write", "arguments": "{...}"}]}, or
// {"error": {"status": 503, "message": "..."}}. Point an OpenAI-compatible
// client at http://127.0.0.1:8080/v1, an Anthropic one at the same URL.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/kubeopencode/kubeopencode/internal/modelserver"
)

type step struct {
	Text      string `json:"text"`
	ToolCalls []struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"toolCalls"`
	Error *struct {
		Status       int    `json:"status"`
		Message      string `json:"message"`
		RetryAfterMs int    `json:"retryAfterMs"`
	} `json:"error"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	scriptFile := flag.String("script", "", "JSON file with the script's steps (required)")
	verbose := flag.Bool("v", false, "print each request's messages too")
	flag.Parse()
	if err := run(*listen, *scriptFile, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "modelserver:", err)
		os.Exit(1)
	}
}

func run(listen, scriptFile string, verbose bool) error {
	if scriptFile == "" {
		return fmt.Errorf("--script is required: a JSON list of steps such as [{\"text\": \"Done.\"}]")
	}
	data, err := os.ReadFile(scriptFile)
	if err != nil {
		return err
	}
	var steps []step
	if err := json.Unmarshal(data, &steps); err != nil {
		return fmt.Errorf("%s: %w", scriptFile, err)
	}
	if len(steps) == 0 {
		return fmt.Errorf("%s: the script has no steps", scriptFile)
	}
	var replies []modelserver.Reply
	for _, s := range steps {
		r := modelserver.Reply{Text: s.Text}
		for _, tc := range s.ToolCalls {
			r.ToolCalls = append(r.ToolCalls, modelserver.ToolCall{Name: tc.Name, Arguments: tc.Arguments})
		}
		if s.Error != nil {
			r.Error = &modelserver.Error{Status: s.Error.Status, Message: s.Error.Message, RetryAfter: time.Duration(s.Error.RetryAfterMs) * time.Millisecond}
		}
		replies = append(replies, r)
	}
	srv, err := modelserver.Start(listen)
	if err != nil {
		return err
	}
	defer srv.Close()
	base := srv.Handle("default", modelserver.Steps(replies...))
	fmt.Printf("scripted model at %s (OpenAI chat completions and Anthropic messages)\n", base)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	seen := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		reqs := srv.Requests("")
		for _, r := range reqs[seen:] {
			fmt.Printf("%s %s request: model %q, turn %d, %d messages, tools %v, key %s\n", r.Received.Format(time.TimeOnly), r.API, r.Model, r.Turn, len(r.Messages), r.Tools, orNone(r.KeyFingerprint))
			if verbose {
				for _, m := range r.Messages {
					fmt.Printf("  %s: %q\n", m.Role, m.Text)
				}
			}
		}
		seen = len(reqs)
	}
}

// orNone shows an empty key fingerprint as "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return "sha256:" + s + "..."
}
