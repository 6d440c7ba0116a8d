package argo

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MediaTypeJSON is the data content type of events from webhook-style
// EventSources (GitHub, webhook, GitLab, ...).
const MediaTypeJSON = "application/json"

// EventContext is the CloudEvents context Argo attaches to every event; a
// parameter's contextKey and a context filter look into it.
type EventContext struct {
	ID              string      `json:"id"`
	Source          string      `json:"source"`
	SpecVersion     string      `json:"specversion"`
	Type            string      `json:"type"`
	DataContentType string      `json:"datacontenttype"`
	Subject         string      `json:"subject"`
	Time            metav1.Time `json:"time"`
}

// Event is one event as a Sensor receives it: the context and the data the
// EventSource published. For a GitHub EventSource, Data is
// {"headers": {...}, "body": {...}}; a parameter's dataKey is a gjson path
// into it, such as body.pull_request.title.
type Event struct {
	Context EventContext `json:"context"`
	// Data is marshalled as base64, as Argo does when a parameter selects
	// neither a key nor a template and so receives the whole event.
	Data []byte `json:"data"`
}

// Names of the headers GitHub sends with every delivery, as GitHub spells
// them. The EventSource copies the first two into the body under exactly
// these names; under "headers" they appear in Go's canonical form
// (X-Github-Event, ...).
const (
	GitHubEventHeader    = "X-GitHub-Event"
	GitHubDeliveryHeader = "X-GitHub-Delivery"
)

// DefaultMaxPayloadSize is the largest request body Argo's webhook-style
// EventSources accept when webhook.maxPayloadSize is not set: 1 MiB.
// GitHub sends push deliveries of up to 25 MB.
const DefaultMaxPayloadSize int64 = 1 << 20

// GitHubMaxPayloadSize is the largest delivery GitHub sends (25 MB).
const GitHubMaxPayloadSize int64 = 25 << 20

// TestWebhookSecret is the secret GitHubEventData signs its deliveries
// with, standing in for the Secret an EventSource's webhookSecret names.
const TestWebhookSecret = "kubeopencode-test-webhook-secret"

// GitHubEventSource reproduces the request handling of an Argo Events GitHub
// EventSource route: the body size limit, the signature check and the event
// data it publishes.
type GitHubEventSource struct {
	// Secret is the webhook secret (webhookSecret); empty for none.
	Secret []byte
	// MaxPayloadSize is webhook.maxPayloadSize; 0 means the default and a
	// negative value stands for an explicit 0, which rejects every body.
	MaxPayloadSize int64
}

// RejectedDeliveryError is the EventSource's answer to a delivery it does
// not publish: HTTP 400 with the error as the body.
type RejectedDeliveryError struct {
	Status int
	Body   string
}

func (e *RejectedDeliveryError) Error() string {
	return fmt.Sprintf("EventSource answers HTTP %d %q and publishes nothing", e.Status, e.Body)
}

// Receive handles one webhook request as the GitHub EventSource does and
// returns the event data it publishes: the request headers (as Go's HTTP
// server parsed them: every header, canonical names, lists of values)
// under "headers" and the JSON body under "body", into which the
// EventSource copies X-GitHub-Event and X-GitHub-Delivery as plain strings.
// The body is decoded and re-encoded on the way, so keys come out sorted,
// numbers as float64 would print them and <, > and & escaped.
func (s GitHubEventSource) Receive(r *http.Request) ([]byte, error) {
	limit := s.MaxPayloadSize
	if limit == 0 {
		limit = DefaultMaxPayloadSize
	}
	if limit < 0 {
		limit = 0
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		return nil, &RejectedDeliveryError{Status: http.StatusBadRequest, Body: err.Error()}
	}
	payload, err := s.validate(r.Header, body)
	if err != nil {
		return nil, &RejectedDeliveryError{Status: http.StatusBadRequest, Body: err.Error()}
	}
	var fields map[string]any
	if err := json.Unmarshal(payload, &fields); err != nil {
		return nil, &RejectedDeliveryError{Status: http.StatusBadRequest, Body: err.Error()}
	}
	for _, h := range []string{GitHubEventHeader, GitHubDeliveryHeader} {
		fields[h] = r.Header.Get(h)
	}
	reencoded, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	body2 := json.RawMessage(reencoded)
	return json.Marshal(githubEventData{Headers: r.Header, Body: &body2})
}

// githubEventData is the layout of the GitHub EventSource's event data.
type githubEventData struct {
	Headers  http.Header       `json:"headers"`
	Body     *json.RawMessage  `json:"body"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// validate checks the content type and, when a secret is set or the
// delivery is signed, the signature, as GitHub's Go client library does
// for the EventSource (X-Hub-Signature-256, else X-Hub-Signature).
func (s GitHubEventSource) validate(h http.Header, body []byte) ([]byte, error) {
	contentType, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	if contentType != "application/json" {
		// GitHub's form-encoded deliveries are not emulated.
		return nil, fmt.Errorf("webhook request has unsupported Content-Type %q", contentType)
	}
	signature := h.Get("X-Hub-Signature-256")
	if signature == "" {
		signature = h.Get("X-Hub-Signature")
	}
	if len(s.Secret) == 0 && signature == "" {
		return body, nil
	}
	if signature == "" {
		return nil, errors.New("missing signature")
	}
	prefix, digest, ok := strings.Cut(signature, "=")
	if !ok {
		return nil, fmt.Errorf("error parsing signature %q", signature)
	}
	var newHash func() hash.Hash
	switch prefix {
	case "sha1":
		newHash = sha1.New
	case "sha256":
		newHash = sha256.New
	default:
		return nil, fmt.Errorf("unknown hash type prefix: %q", prefix)
	}
	want, err := hex.DecodeString(digest)
	if err != nil {
		return nil, fmt.Errorf("error decoding signature %q: %v", signature, err)
	}
	mac := hmac.New(newHash, s.Secret)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), want) {
		return nil, errors.New("payload signature check failed")
	}
	return body, nil
}

// GitHubRequest builds the HTTP request GitHub sends for a delivery, with
// every header GitHub sets, signed with secret, and parsed by Go's HTTP
// request parser (the one the EventSource's server uses), so that its
// headers are exactly what the EventSource sees.
func GitHubRequest(eventType, deliveryID string, payload []byte, secret []byte) (*http.Request, error) {
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "POST /github HTTP/1.1\r\n")
	header := func(name, value string) { fmt.Fprintf(&raw, "%s: %s\r\n", name, value) }
	header("Host", "hooks.example.com")
	header("Accept", "*/*")
	header("Content-Type", "application/json")
	header("Content-Length", fmt.Sprint(len(payload)))
	header("User-Agent", "GitHub-Hookshot/4d63a2b")
	header("X-GitHub-Delivery", deliveryID)
	header("X-GitHub-Event", eventType)
	header("X-GitHub-Hook-ID", "509203716")
	header("X-GitHub-Hook-Installation-Target-ID", "712940385")
	header("X-GitHub-Hook-Installation-Target-Type", "repository")
	if len(secret) > 0 {
		header("X-Hub-Signature", "sha1="+sign(newSHA1, secret, payload))
		header("X-Hub-Signature-256", "sha256="+sign(newSHA256, secret, payload))
	}
	raw.WriteString("\r\n")
	raw.Write(payload)
	return http.ReadRequest(bufio.NewReader(&raw))
}

func sign(newHash func() hash.Hash, secret, payload []byte) string {
	mac := hmac.New(newHash, secret)
	mac.Write(payload)
	return hex.EncodeToString(mac.Sum(nil))
}

// GitHubEventData returns the event data a GitHub EventSource with the
// default payload limit and TestWebhookSecret publishes for a delivery of
// eventType with the given JSON body (see GitHubEventSource.Receive).
// A delivery the EventSource rejects, such as a body over 1 MiB, is a
// *RejectedDeliveryError.
func GitHubEventData(eventType, deliveryID string, payload []byte) ([]byte, error) {
	req, err := GitHubRequest(eventType, deliveryID, payload, []byte(TestWebhookSecret))
	if err != nil {
		return nil, fmt.Errorf("GitHub %s delivery %s: %w", eventType, deliveryID, err)
	}
	data, err := GitHubEventSource{Secret: []byte(TestWebhookSecret)}.Receive(req)
	if err != nil {
		return nil, fmt.Errorf("GitHub %s delivery %s: %w", eventType, deliveryID, err)
	}
	return data, nil
}

// The hash constructors signatures use, named for the tests.
var (
	newSHA1   = sha1.New
	newSHA256 = sha256.New
)

// NewGitHubEventSource reads the settings of one GitHub event of an
// EventSource manifest (spec.github.<eventName>) that decide which
// deliveries it accepts: the webhook's maxPayloadSize. Field names match in
// their exact case, as when Argo reads the EventSource.
func NewGitHubEventSource(eventSource map[string]any, eventName string, secret []byte) (GitHubEventSource, error) {
	raw, err := json.Marshal(eventSource["spec"])
	if err != nil {
		return GitHubEventSource{}, err
	}
	var spec struct {
		GitHub map[string]struct {
			Webhook *struct {
				MaxPayloadSize *int64 `json:"maxPayloadSize"`
			} `json:"webhook"`
		} `json:"github"`
	}
	if err := unmarshalArgo(raw, &spec); err != nil {
		return GitHubEventSource{}, fmt.Errorf("EventSource %s: spec: %w", objectName(eventSource), err)
	}
	gh, ok := spec.GitHub[eventName]
	if !ok {
		return GitHubEventSource{}, fmt.Errorf("EventSource %s has no spec.github.%s", objectName(eventSource), eventName)
	}
	s := GitHubEventSource{Secret: secret}
	if gh.Webhook != nil && gh.Webhook.MaxPayloadSize != nil {
		s.MaxPayloadSize = *gh.Webhook.MaxPayloadSize
		if s.MaxPayloadSize <= 0 {
			s.MaxPayloadSize = -1
		}
	}
	return s, nil
}
