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
// logs.
package opencode

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
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
	// Steps is the number of model steps; ToolCalls the tools run.
	Steps     int
	ToolCalls []string
	// FinalText is the text of the model's last step.
	FinalText string
	// Problem says why the work cannot be taken as done; empty when it can.
	Problem string
	// Events is the number of events read.
	Events int
}

// OK says whether the run did the Task's work, as far as OpenCode can tell.
func (v *Verdict) OK() bool { return v.Problem == "" }

// MaxOutput is how much of a tool's output the transcript shows.
const MaxOutput = 4000

// Follow reads OpenCode's JSON events from r until it ends, writes a
// transcript to w and returns the verdict. Lines that are not events are
// copied to the transcript as they are.
func Follow(r io.Reader, w io.Writer) *Verdict {
	v := &Verdict{}
	var (
		lastReason string
		stepText   strings.Builder
		problems   []string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev Event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Type == "" {
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		v.Events++
		switch ev.Type {
		case "step_start":
			v.Steps++
			stepText.Reset()
		case "text":
			stepText.WriteString(ev.Part.Text)
			fmt.Fprintf(w, "[text] %s\n", ev.Part.Text)
		case "tool_use":
			st := ev.Part.State
			tool := ev.Part.Tool
			v.ToolCalls = append(v.ToolCalls, tool)
			fmt.Fprintf(w, "[tool %s] %s %s\n", tool, st.Status, compact(st.Input))
			if st.Output != "" {
				fmt.Fprintf(w, "%s\n", indent(truncate(st.Output, MaxOutput)))
			}
			if st.Error != "" {
				fmt.Fprintf(w, "%s\n", indent(st.Error))
			}
			switch {
			case tool == "invalid" && strings.Contains(st.Output+st.Error, "unavailable tool"):
				var in struct {
					Tool string `json:"tool"`
				}
				_ = json.Unmarshal(st.Input, &in)
				problems = append(problems, fmt.Sprintf("the model called the tool %q, which the configuration does not allow", in.Tool))
			case st.Status == "error" && strings.Contains(strings.ToLower(st.Error), "rejected permission"):
				problems = append(problems, fmt.Sprintf("OpenCode refused the %s tool call %s (permission not granted)", tool, compact(st.Input)))
			}
		case "step_finish":
			lastReason = ev.Part.Reason
			v.FinalText = stepText.String()
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
			fmt.Fprintf(w, "[error] %s\n", msg)
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

func compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	return truncate(string(raw), 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d more bytes)", len(s)-n)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
