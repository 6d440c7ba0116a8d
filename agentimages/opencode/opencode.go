// Package opencode runs OpenCode on a Task and decides whether the Task's
// work was done.
//
// OpenCode's exit code alone does not say so: `opencode run` exits 0 when
// a tool call was refused (a permission set to "ask" is auto-rejected when
// nobody can answer, and the run simply stops) and when the model called a
// tool the configuration denies. The launcher therefore runs it with
// --format json, reads its event stream (one JSON object a line: step_start,
// text, tool_use, step_finish, error) and calls the run successful only when
//
//   - OpenCode exited 0,
//   - it reported no error event,
//   - no tool call was refused or named a tool that is not available, and
//   - the last step finished with reason "stop": the model gave its final
//     answer rather than being cut off mid-way.
//
// Every event is also turned into a readable transcript (text, tool calls
// with their input, status and output), which is what the agent container
// logs. The transcript is printed through a Transcript, which redacts
// credentials, escapes terminal control characters and starts every line
// with one of the launcher's prefixes or with Indent: nothing the agent
// prints can start a line with contract.ResultsPrefix.
//
// The stream also gives the run's results (contract.AgentResults):
//
//   - Usage sums the step_finish events: part.tokens.input, .output,
//     .reasoning, .cache.read and .cache.write, and part.cost (US dollars,
//     as OpenCode computes it from the model's configured cost). Steps
//     counts the step_finish events: the steps that got an answer, whose
//     usage is known (Verdict.Steps counts the steps started). OpenCode's
//     tokens.input excludes the cached prompt tokens: for an
//     OpenAI-compatible provider it is prompt_tokens minus
//     prompt_tokens_details.cached_tokens (cache writes, which OpenAI does
//     not report apart, stay in it), for Anthropic it is input_tokens;
//     cache.read and cache.write are the cached tokens read and written.
//   - The pull request URL is the last pull or merge request URL, in order
//     of appearance, in the model's text events and its tools' outputs:
//     https://HOST/OWNER/REPO/pull/N (GitHub and GitHub Enterprise),
//     https://HOST/OWNER/REPO/pulls/N (Gitea, Forgejo),
//     https://HOST/GROUP[/SUBGROUP...]/REPO/-/merge_requests/N (GitLab) or
//     https://HOST/.../pull-requests/N (Bitbucket). Only https URLs, at
//     most MaxPullRequestURL bytes, ending after N (so without trailing
//     punctuation, "/files" or a "#fragment"), are taken; URLs with
//     userinfo are not.
package opencode

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Event is one line of `opencode run --format json`.
type Event struct {
	Type string `json:"type"`
	Part struct {
		Type   string `json:"type"`
		Text   string `json:"text"`
		Tool   string `json:"tool"`
		Reason string `json:"reason"`
		State  struct {
			Status string          `json:"status"`
			Input  json.RawMessage `json:"input"`
			Output string          `json:"output"`
			Error  string          `json:"error"`
		} `json:"state"`
		// Tokens and Cost are set on step_finish. Numbers are read as
		// float64 so that an unexpected fraction cannot make the whole
		// event unreadable.
		Tokens struct {
			Input     float64 `json:"input"`
			Output    float64 `json:"output"`
			Reasoning float64 `json:"reasoning"`
			Cache     struct {
				Read  float64 `json:"read"`
				Write float64 `json:"write"`
			} `json:"cache"`
		} `json:"tokens"`
		Cost float64 `json:"cost"`
	} `json:"part"`
	Error *struct {
		Name string `json:"name"`
		Data struct {
			Message    string `json:"message"`
			StatusCode int    `json:"statusCode"`
			Metadata   struct {
				URL string `json:"url"`
			} `json:"metadata"`
		} `json:"data"`
	} `json:"error"`
}

// Verdict is what the event stream says about the run.
type Verdict struct {
	// Steps is the number of model steps started; ToolCalls the tools run.
	Steps     int
	ToolCalls []string
	// FinalText is the text of the model's last step.
	FinalText string
	// Problem says why the work cannot be taken as done; empty when it can.
	Problem string
	// Events is the number of events read.
	Events int
	// Usage is the usage summed over the step_finish events (see the
	// package documentation).
	Usage contract.Usage
	// PullRequestURL is the last pull or merge request URL of the model's
	// text and its tools' outputs (see the package documentation).
	PullRequestURL string
}

// OK says whether the run did the Task's work, as far as OpenCode can tell.
func (v *Verdict) OK() bool { return v.Problem == "" }

// MaxOutput is how much of a tool's output the transcript shows.
const MaxOutput = 4000

// Transcript prefixes of Follow's lines.
const (
	PrefixText   = "[text] "
	PrefixError  = "[error] "
	PrefixOutput = "[opencode] "
)

// Follow reads OpenCode's JSON events from r until it ends, writes a
// transcript to w (a Transcript redacting URL userinfo only) and returns
// the verdict.
func Follow(r io.Reader, w io.Writer) *Verdict {
	return NewTranscript(w, nil).Follow(r)
}

// Follow reads OpenCode's JSON events from r until it ends, prints their
// transcript and returns the verdict. Lines that are not events are
// printed after PrefixOutput.
func (t *Transcript) Follow(r io.Reader) *Verdict {
	v := &Verdict{}
	var (
		lastReason string
		stepText   strings.Builder
		problems   []string
	)
	notePR := func(s string) {
		if u := LastPullRequestURL(s); u != "" {
			v.PullRequestURL = u
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev Event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Type == "" {
			t.Print(PrefixOutput, string(line))
			continue
		}
		v.Events++
		switch ev.Type {
		case "step_start":
			v.Steps++
			stepText.Reset()
		case "text":
			stepText.WriteString(ev.Part.Text)
			notePR(ev.Part.Text)
			t.Print(PrefixText, ev.Part.Text)
		case "tool_use":
			st := ev.Part.State
			tool := ev.Part.Tool
			v.ToolCalls = append(v.ToolCalls, tool)
			t.Printf("[tool "+t.Inline(tool)+"] ", "%s %s", st.Status, t.compact(st.Input))
			if st.Output != "" {
				notePR(st.Output)
				// Redacted before it is cut, so that the cut cannot
				// leave part of a credential.
				t.Print(Indent, truncate(t.red.Redact(st.Output), MaxOutput))
			}
			if st.Error != "" {
				t.Print(Indent, st.Error)
			}
			switch {
			case tool == "invalid" && strings.Contains(st.Output+st.Error, "unavailable tool"):
				var in struct {
					Tool string `json:"tool"`
				}
				_ = json.Unmarshal(st.Input, &in)
				problems = append(problems, fmt.Sprintf("the model called the tool %q, which the configuration does not allow", in.Tool))
			case st.Status == "error" && strings.Contains(strings.ToLower(st.Error), "rejected permission"):
				problems = append(problems, fmt.Sprintf("OpenCode refused the %s tool call %s (permission not granted)", tool, t.compact(st.Input)))
			}
		case "step_finish":
			lastReason = ev.Part.Reason
			v.FinalText = stepText.String()
			u, tk := &v.Usage, &ev.Part.Tokens
			u.Steps++
			u.InputTokens += int64(tk.Input)
			u.OutputTokens += int64(tk.Output)
			u.ReasoningTokens += int64(tk.Reasoning)
			u.CacheReadTokens += int64(tk.Cache.Read)
			u.CacheWriteTokens += int64(tk.Cache.Write)
			u.CostUSD += ev.Part.Cost
		case "error":
			msg := "OpenCode reported an error"
			if e := ev.Error; e != nil {
				msg = e.Name + ": " + e.Data.Message
				if e.Data.StatusCode != 0 {
					msg += fmt.Sprintf(" (HTTP %d", e.Data.StatusCode)
					if e.Data.Metadata.URL != "" {
						msg += " from " + e.Data.Metadata.URL
					}
					msg += ")"
				} else if e.Data.Metadata.URL != "" {
					msg += " (" + e.Data.Metadata.URL + ")"
				}
			}
			t.Print(PrefixError, msg)
			problems = append(problems, "the model request failed: "+msg)
		}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, "reading OpenCode's events: "+err.Error())
	}
	if len(problems) == 0 {
		switch {
		case v.Steps == 0:
			problems = append(problems, "OpenCode ran no model step")
		case lastReason != "stop":
			problems = append(problems, fmt.Sprintf("the model's last step ended with %q, not with a final answer", lastReason))
		}
	}
	v.Problem = strings.Join(problems, "; ")
	return v
}

// compact is a tool call's input, redacted then cut.
func (t *Transcript) compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	return truncate(t.red.Redact(string(raw)), 300)
}

// truncate cuts s to at most n bytes at a character boundary and says how
// much was cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("... (%d more bytes)", len(s)-n)
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
