package modelserver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

type responseWriter = http.ResponseWriter

// The Anthropic messages request, as far as the script needs it.
type anthropicRequest struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	System   json.RawMessage `json:"system"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

func parseAnthropic(body []byte) (*Request, error) {
	var in anthropicRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("the request body is not a messages request: %w", err)
	}
	if len(in.Messages) == 0 {
		return nil, errNoMessages
	}
	r := &Request{API: "anthropic", Model: in.Model, Stream: in.Stream, Body: body, System: contentText(in.System)}
	for _, t := range in.Tools {
		r.Tools = append(r.Tools, t.Name)
	}
	for _, m := range in.Messages {
		if m.Role == "assistant" {
			r.Turn++
		}
		r.Messages = append(r.Messages, Message{Role: m.Role, Text: contentText(m.Content)})
	}
	return r, nil
}

func anthropicContent(id string, reply Reply) ([]map[string]any, string) {
	var content []map[string]any
	if reply.Text != "" {
		content = append(content, map[string]any{"type": "text", "text": reply.Text})
	}
	stop := "end_turn"
	for i, tc := range reply.ToolCalls {
		var input any = map[string]any{}
		if tc.Arguments != "" {
			_ = json.Unmarshal([]byte(tc.Arguments), &input)
		}
		content = append(content, map[string]any{"type": "tool_use", "id": fmt.Sprintf("toolu_%s_%d", id, i), "name": tc.Name, "input": input})
		stop = "tool_use"
	}
	return content, stop
}

func anthropicResponse(id, model string, reply Reply) map[string]any {
	content, stop := anthropicContent(id, reply)
	return map[string]any{
		"id": "msg_" + id, "type": "message", "role": "assistant", "model": model,
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": anthropicUsage(reply.usage(), reply.usage().OutputTokens),
	}
}

// anthropicUsage is u as Anthropic reports it, with output tokens so far.
func anthropicUsage(u Usage, output int64) map[string]any {
	return map[string]any{
		"input_tokens": u.InputTokens, "output_tokens": output,
		"cache_read_input_tokens": u.CacheReadTokens, "cache_creation_input_tokens": u.CacheWriteTokens,
	}
}

// streamAnthropic frames the reply as Anthropic streams it: message_start,
// a ping, per content block content_block_start, its deltas (text_delta or
// input_json_delta) and content_block_stop, then message_delta with the
// stop reason and message_stop; every event named in an "event:" line.
func streamAnthropic(w responseWriter, id, model string, reply Reply) {
	s := newSSE(w)
	s.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": "msg_" + id, "type": "message", "role": "assistant", "model": model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": anthropicUsage(reply.usage(), 1),
	}})
	s.event("ping", map[string]any{"type": "ping"})
	index := 0
	if reply.Text != "" {
		s.event("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{"type": "text", "text": ""}})
		for _, piece := range chunks(reply.Text, 16) {
			s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "text_delta", "text": piece}})
		}
		s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	stop := "end_turn"
	for i, tc := range reply.ToolCalls {
		s.event("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{
			"type": "tool_use", "id": fmt.Sprintf("toolu_%s_%d", id, i), "name": tc.Name, "input": map[string]any{},
		}})
		for _, piece := range chunks(tc.Arguments, 24) {
			s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "input_json_delta", "partial_json": piece}})
		}
		s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
		stop = "tool_use"
	}
	s.event("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": reply.usage().OutputTokens}})
	s.event("message_stop", map[string]any{"type": "message_stop"})
}
