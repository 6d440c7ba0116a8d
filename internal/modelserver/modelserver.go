// Package modelserver is a scripted language-model endpoint: a test double
// for the model only. It speaks the two wire protocols coding agents use,
// OpenAI chat completions (POST .../chat/completions) and Anthropic messages
// (POST .../messages), streaming (server-sent events framed as the real
// providers frame them) and not, with tool calls. Each conversation is
// answered from a Script, and every request is logged so that a test can
// assert what the agent sent: its prompt, its tool results, its tools.
//
// Several agents can share one server: a request to
// /s/<script>/v1/chat/completions is answered by the script registered
// under <script>; /v1/... uses the script named "default".
package modelserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Reply is what the model answers to one request.
type Reply struct {
	// Text is the assistant's text. With ToolCalls it is said before them.
	Text string
	// ToolCalls asks the agent to run tools; the conversation then
	// continues with their results.
	ToolCalls []ToolCall
	// Error, when set, fails the request the way a provider does.
	Error *Error
	// Hold keeps the request open without an answer until the client goes
	// away or Hold passes, as a model that is still thinking.
	Hold time.Duration
	// Usage is the usage the reply reports; DefaultUsage when nil.
	Usage *Usage
}

// Usage is the token usage a reply reports, in the terms of Anthropic's
// API: InputTokens are the prompt tokens neither read from nor written to
// the prompt cache. The OpenAI protocol reports it as its providers do:
// prompt_tokens is every prompt token (InputTokens + CacheReadTokens +
// CacheWriteTokens), prompt_tokens_details.cached_tokens is
// CacheReadTokens; OpenAI has no field for cache writes, so
// CacheWriteTokens appear there only within prompt_tokens.
type Usage struct {
	InputTokens      int64
	OutputTokens     int64
	CacheReadTokens  int64
	CacheWriteTokens int64
}

// DefaultUsage is what a reply without Usage reports.
var DefaultUsage = Usage{InputTokens: 100, OutputTokens: 20}

// usage is the reply's usage, or DefaultUsage.
func (r Reply) usage() Usage {
	if r.Usage != nil {
		return *r.Usage
	}
	return DefaultUsage
}

// ToolCall is one call of a tool the agent offered.
type ToolCall struct {
	Name string
	// Arguments is the JSON object of the call's arguments.
	Arguments string
}

// Error is a provider failure.
type Error struct {
	// Status is the HTTP status, for example 401 or 503.
	Status int
	// Message is the provider's error message.
	Message string
	// RetryAfter, when set, is sent as the retry-after-ms header, which
	// agents honour when they retry.
	RetryAfter time.Duration
}

// Request is what the agent sent, as the script sees it.
type Request struct {
	// Script is the name of the script the request was routed to.
	Script string
	// API is "openai" or "anthropic".
	API string
	// Model is the model the agent asked for.
	Model string
	// Stream says whether the agent asked for server-sent events.
	Stream bool
	// Turn is the number of assistant messages already in the
	// conversation: 0 for the first request of a conversation, 1 after the
	// first reply, and so on.
	Turn int
	// Tools are the names of the tools the agent offered.
	Tools []string
	// System is the system prompt; Messages the conversation, as text:
	// each message's role, then its text, tool calls and tool results.
	System   string
	Messages []Message
	// Body is the request body as received.
	Body json.RawMessage
	// Received is when the request arrived.
	Received time.Time
	// Header holds the request headers; Authorization and x-api-key are
	// recorded as "<redacted>" when present.
	Header http.Header
	// KeyFingerprint identifies the API key the agent sent (Authorization:
	// Bearer or x-api-key) without recording it: KeyFingerprint of the key.
	KeyFingerprint string
}

// KeyFingerprint is what Request.KeyFingerprint holds for key: the first 16
// hex digits of its SHA-256; empty for no key.
func KeyFingerprint(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// Message is one message of a conversation, flattened to text.
type Message struct {
	Role string
	Text string
}

// Text joins the system prompt and every message.
func (r *Request) Text() string {
	var b strings.Builder
	b.WriteString(r.System)
	for _, m := range r.Messages {
		b.WriteString("\n")
		b.WriteString(m.Text)
	}
	return b.String()
}

// HasTool says whether the agent offered the named tool.
func (r *Request) HasTool(name string) bool {
	for _, t := range r.Tools {
		if t == name {
			return true
		}
	}
	return false
}

// Script answers the requests of one conversation.
type Script func(*Request) Reply

// Steps is the usual script: it answers the request of turn i with
// steps[i] and, past the end, with the last step. Agents also ask the model
// for side tasks (a session title) without offering tools; those get
// SideReply.
func Steps(steps ...Reply) Script {
	return func(r *Request) Reply {
		if len(r.Tools) == 0 {
			return SideReply
		}
		if r.Turn < len(steps) {
			return steps[r.Turn]
		}
		return steps[len(steps)-1]
	}
}

// SideReply answers a request that offered no tools, such as an agent
// asking for a session title.
var SideReply = Reply{Text: "Scripted task"}

// Server is a running scripted model endpoint.
type Server struct {
	// URL is the base URL, "http://host:port".
	URL string

	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	scripts map[string]Script
	log     []*Request
	waiters []chan struct{}
}

// Start serves on addr ("127.0.0.1:0", or the pod bridge's address for
// pods to reach).
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("model server: %w", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), ln: ln, scripts: map[string]Script{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server and ends held requests.
func (s *Server) Close() { _ = s.srv.Close() }

// Handle registers script under name and returns the base URL of its
// OpenAI-compatible API (".../s/<name>/v1"); Anthropic's is the same.
func (s *Server) Handle(name string, script Script) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[name] = script
	return s.BaseURL(name)
}

// BaseURL is the base URL of the named script's API, whether or not it is
// registered yet.
func (s *Server) BaseURL(name string) string {
	if name == "default" {
		return s.URL + "/v1"
	}
	return s.URL + "/s/" + name + "/v1"
}

// Requests returns the requests routed to the named script, in arrival
// order; all requests when name is empty.
func (s *Server) Requests(name string) []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Request
	for _, r := range s.log {
		if name == "" || r.Script == name {
			out = append(out, r)
		}
	}
	return out
}

// WaitRequest waits until a request for the named script satisfies cond.
func (s *Server) WaitRequest(ctx context.Context, name string, cond func(*Request) bool) (*Request, error) {
	for {
		s.mu.Lock()
		for _, r := range s.log {
			if r.Script == name && cond(r) {
				s.mu.Unlock()
				return r, nil
			}
		}
		ch := make(chan struct{})
		s.waiters = append(s.waiters, ch)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("model script %q: no matching request: %w", name, ctx.Err())
		case <-ch:
		}
	}
}

func (s *Server) record(r *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, r)
	for _, ch := range s.waiters {
		close(ch)
	}
	s.waiters = nil
}

// ServeHTTP routes a request to its script and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	name, rest := "default", hr.URL.Path
	if after, ok := strings.CutPrefix(rest, "/s/"); ok {
		name, rest, _ = strings.Cut(after, "/")
		rest = "/" + rest
	}
	var api string
	switch {
	case hr.Method == http.MethodPost && strings.HasSuffix(rest, "/chat/completions"):
		api = "openai"
	case hr.Method == http.MethodPost && strings.HasSuffix(rest, "/messages"):
		api = "anthropic"
	default:
		http.Error(w, fmt.Sprintf("the scripted model serves POST .../chat/completions and POST .../messages, not %s %s", hr.Method, hr.URL.Path), http.StatusNotFound)
		return
	}
	s.mu.Lock()
	script := s.scripts[name]
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(hr.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := parse(api, body)
	if err != nil {
		writeError(w, api, &Error{Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	req.Script, req.Received, req.Header = name, time.Now(), redact(hr.Header)
	key := strings.TrimPrefix(hr.Header.Get("Authorization"), "Bearer ")
	if key == "" {
		key = hr.Header.Get("X-Api-Key")
	}
	req.KeyFingerprint = KeyFingerprint(key)
	s.record(req)
	if script == nil {
		writeError(w, api, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no script named %q", name)})
		return
	}
	reply := script(req)
	if reply.Hold > 0 {
		select {
		case <-hr.Context().Done():
			return
		case <-time.After(reply.Hold):
		}
	}
	if reply.Error != nil {
		writeError(w, api, reply.Error)
		return
	}
	id := fmt.Sprintf("%s-%d", name, len(s.Requests(name)))
	switch {
	case api == "openai" && req.Stream:
		streamOpenAI(w, id, req.Model, reply)
	case api == "openai":
		writeJSON(w, openAIResponse(id, req.Model, reply))
	case req.Stream:
		streamAnthropic(w, id, req.Model, reply)
	default:
		writeJSON(w, anthropicResponse(id, req.Model, reply))
	}
}

func redact(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range []string{"Authorization", "X-Api-Key"} {
		if out.Get(k) != "" {
			out.Set(k, "<redacted>")
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers as the provider does: OpenAI's {"error": {...}} or
// Anthropic's {"type": "error", "error": {...}}.
func writeError(w http.ResponseWriter, api string, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("retry-after-ms", fmt.Sprint(e.RetryAfter.Milliseconds()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	var body any
	if api == "openai" {
		body = map[string]any{"error": map[string]any{"message": e.Message, "type": openAIErrorType(e.Status), "param": nil, "code": nil}}
	} else {
		body = map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(e.Status), "message": e.Message}}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func openAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// sse writes server-sent events and flushes each one, as providers do.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func newSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	return &sse{w: w, f: f}
}

// event writes one event; an empty name writes a data-only event
// (OpenAI's framing), a name adds an "event:" line (Anthropic's).
func (s *sse) event(name string, data any) {
	var payload []byte
	switch d := data.(type) {
	case string:
		payload = []byte(d)
	default:
		payload, _ = json.Marshal(d)
	}
	if name != "" {
		fmt.Fprintf(s.w, "event: %s\n", name)
	}
	fmt.Fprintf(s.w, "data: %s\n\n", payload)
	if s.f != nil {
		s.f.Flush()
	}
}

// chunks splits s into pieces of at most n bytes on rune boundaries, so a
// streamed answer arrives in several deltas like a real one.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		i := n
		for i > 0 && !utf8RuneStart(s[i]) {
			i--
		}
		if i == 0 {
			i = n
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

var errNoMessages = errors.New("the request has no messages")
