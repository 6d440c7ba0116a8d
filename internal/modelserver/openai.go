package modelserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The OpenAI chat-completions request, as far as the script needs it.
type openAIRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		ToolCalls []struct {
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// contentText flattens a message content that is a string or a list of
// parts ({"type": "text", "text": ...}, or Anthropic's blocks).
func contentText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []map[string]any
	if json.Unmarshal(raw, &parts) != nil {
		return string(raw)
	}
	var b strings.Builder
	for _, p := range parts {
		switch p["type"] {
		case "text":
			fmt.Fprintf(&b, "%v\n", p["text"])
		case "tool_use":
			in, _ := json.Marshal(p["input"])
			fmt.Fprintf(&b, "[tool call %v %s]\n", p["name"], in)
		case "tool_result":
			c, _ := json.Marshal(p["content"])
			fmt.Fprintf(&b, "[tool result %s]\n", contentText(c))
		}
	}
	return b.String()
}

func parse(api string, body []byte) (*Request, error) {
	if api == "openai" {
		return parseOpenAI(body)
	}
	return parseAnthropic(body)
}

func parseOpenAI(body []byte) (*Request, error) {
	var in openAIRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("the request body is not a chat-completions request: %w", err)
	}
	if len(in.Messages) == 0 {
		return nil, errNoMessages
	}
	r := &Request{API: "openai", Model: in.Model, Stream: in.Stream, Body: body}
	for _, t := range in.Tools {
		r.Tools = append(r.Tools, t.Function.Name)
	}
	for _, m := range in.Messages {
		text := contentText(m.Content)
		for _, tc := range m.ToolCalls {
			text += fmt.Sprintf("[tool call %s %s]\n", tc.Function.Name, tc.Function.Arguments)
		}
		switch m.Role {
		case "system", "developer":
			r.System += text + "\n"
			continue
		case "assistant":
			r.Turn++
		case "tool":
			text = "[tool result " + text + "]"
		}
		r.Messages = append(r.Messages, Message{Role: m.Role, Text: text})
	}
	return r, nil
}

func openAIResponse(id, model string, reply Reply) map[string]any {
	msg := map[string]any{"role": "assistant", "content": reply.Text}
	finish := "stop"
	if len(reply.ToolCalls) > 0 {
		var calls []map[string]any
		for i, tc := range reply.ToolCalls {
			calls = append(calls, map[string]any{
				"id": fmt.Sprintf("call_%s_%d", id, i), "type": "function",
				"function": map[string]any{"name": tc.Name, "arguments": tc.Arguments},
			})
		}
		msg["tool_calls"] = calls
		finish = "tool_calls"
	}
	return map[string]any{
		"id": "chatcmpl-" + id, "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   openAIUsage(reply.usage()),
	}
}

// openAIUsage is u as OpenAI reports it: prompt_tokens counts the cached
// tokens too, and prompt_tokens_details says how many of them were cached.
func openAIUsage(u Usage) map[string]any {
	prompt := u.InputTokens + u.CacheReadTokens + u.CacheWriteTokens
	return map[string]any{
		"prompt_tokens": prompt, "completion_tokens": u.OutputTokens, "total_tokens": prompt + u.OutputTokens,
		"prompt_tokens_details":     map[string]any{"cached_tokens": u.CacheReadTokens},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0},
	}
}

// streamOpenAI frames the reply as OpenAI streams it: data-only events of
// chat.completion.chunk objects, the role first, the text in pieces, each
// tool call opened with its id and name and its arguments in pieces, a
// chunk with the finish reason, a usage chunk, then "data: [DONE]".
func streamOpenAI(w responseWriter, id, model string, reply Reply) {
	s := newSSE(w)
	created := time.Now().Unix()
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": "chatcmpl-" + id, "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}},
		}
	}
	s.event("", chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	for _, piece := range chunks(reply.Text, 16) {
		s.event("", chunk(map[string]any{"content": piece}, nil))
	}
	for i, tc := range reply.ToolCalls {
		s.event("", chunk(map[string]any{"tool_calls": []map[string]any{{
			"index": i, "id": fmt.Sprintf("call_%s_%d", id, i), "type": "function",
			"function": map[string]any{"name": tc.Name, "arguments": ""},
		}}}, nil))
		for _, piece := range chunks(tc.Arguments, 24) {
			s.event("", chunk(map[string]any{"tool_calls": []map[string]any{{
				"index": i, "function": map[string]any{"arguments": piece},
			}}}, nil))
		}
	}
	finish := "stop"
	if len(reply.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	s.event("", chunk(map[string]any{}, finish))
	s.event("", map[string]any{
		"id": "chatcmpl-" + id, "object": "chat.completion.chunk", "created": created, "model": model,
		"choices": []any{}, "usage": openAIUsage(reply.usage()),
	})
	s.event("", "[DONE]")
}
