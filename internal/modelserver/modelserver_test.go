package modelserver_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/internal/modelserver"
)

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// events reads server-sent events: (name, data) pairs.
func events(t *testing.T, r io.Reader) [][2]string {
	t.Helper()
	var out [][2]string
	var name string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			out = append(out, [2]string{name, strings.TrimPrefix(line, "data: ")})
			name = ""
		case line != "":
			t.Fatalf("unexpected line %q", line)
		}
	}
	return out
}

var toolReply = modelserver.Reply{Text: "Writing the file now.", ToolCalls: []modelserver.ToolCall{{Name: "write", Arguments: `{"filePath": "/workspace/a.txt", "content": "a long enough content to be split"}`}}}

func TestOpenAIStreamFraming(t *testing.T) {
	srv, err := modelserver.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	base := srv.Handle("s", modelserver.Steps(toolReply))
	resp := post(t, base+"/chat/completions", `{"model": "m", "stream": true, "tools": [{"type": "function", "function": {"name": "write"}}],
		"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hello"}]}]}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	evs := events(t, resp.Body)
	require.Equal(t, "[DONE]", evs[len(evs)-1][1], "the stream ends with data: [DONE]")
	var text, args, name, id, finish string
	for _, ev := range evs[:len(evs)-1] {
		assert.Empty(t, ev[0], "OpenAI sends data-only events")
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(ev[1]), &c))
		assert.Equal(t, "chat.completion.chunk", c.Object)
		for _, ch := range c.Choices {
			text += ch.Delta.Content
			for _, tc := range ch.Delta.ToolCalls {
				if tc.ID != "" {
					id, name = tc.ID, tc.Function.Name
				}
				args += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	assert.Equal(t, toolReply.Text, text)
	assert.NotEmpty(t, id)
	assert.Equal(t, "write", name)
	assert.JSONEq(t, toolReply.ToolCalls[0].Arguments, args, "the arguments arrive in pieces that join to the JSON")
	assert.Equal(t, "tool_calls", finish)

	r := srv.Requests("s")[0]
	assert.Equal(t, "be brief\n", r.System)
	assert.Equal(t, []string{"write"}, r.Tools)
	assert.Equal(t, 0, r.Turn)
}

func TestAnthropicStreamFraming(t *testing.T) {
	srv, err := modelserver.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	base := srv.Handle("s", modelserver.Steps(modelserver.Reply{Text: "first"}, toolReply))
	resp := post(t, base+"/messages", `{"model": "m", "stream": true, "system": [{"type": "text", "text": "be brief"}], "tools": [{"name": "write"}],
		"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "first"}]}, {"role": "user", "content": "go on"}]}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	evs := events(t, resp.Body)
	var names []string
	var text, args string
	for _, ev := range evs {
		names = append(names, ev[0])
		var e struct {
			Type  string `json:"type"`
			Delta struct {
				Type        string `json:"type"`
				Text        string `json:"text"`
				PartialJSON string `json:"partial_json"`
				StopReason  string `json:"stop_reason"`
			} `json:"delta"`
		}
		require.NoError(t, json.Unmarshal([]byte(ev[1]), &e))
		assert.Equal(t, ev[0], e.Type, "the event line names the data's type")
		text += e.Delta.Text
		args += e.Delta.PartialJSON
		if e.Type == "message_delta" {
			assert.Equal(t, "tool_use", e.Delta.StopReason)
		}
	}
	assert.Equal(t, "message_start", names[0])
	assert.Equal(t, "ping", names[1])
	assert.Equal(t, "message_stop", names[len(names)-1])
	assert.Equal(t, "message_delta", names[len(names)-2])
	assert.Equal(t, toolReply.Text, text)
	assert.JSONEq(t, toolReply.ToolCalls[0].Arguments, args)
	assert.Equal(t, 1, srv.Requests("s")[0].Turn, "the second turn of the conversation got the second step")
}

func TestErrorsAsProvidersSendThem(t *testing.T) {
	srv, err := modelserver.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	base := srv.Handle("s", func(*modelserver.Request) modelserver.Reply {
		return modelserver.Reply{Error: &modelserver.Error{Status: 529, Message: "overloaded", RetryAfter: 1500 * time.Millisecond}}
	})
	resp := post(t, base+"/messages", `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)
	assert.Equal(t, 529, resp.StatusCode)
	assert.Equal(t, "1500", resp.Header.Get("retry-after-ms"))
	body, _ := io.ReadAll(resp.Body)
	assert.JSONEq(t, `{"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}}`, string(body))

	resp = post(t, base+"/chat/completions", `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)
	body, _ = io.ReadAll(resp.Body)
	assert.JSONEq(t, `{"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}`, string(body))

	resp = post(t, srv.URL+"/s/unknown/v1/chat/completions", `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	body, _ = io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `no script named \"unknown\"`)
}
