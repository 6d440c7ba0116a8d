package argo

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// MediaTypeJSON is the data content type of events from webhook-style
// EventSources (GitHub, webhook, GitLab, ...).
const MediaTypeJSON = "application/json"

// EventContext is the CloudEvents context Argo attaches to every event; a
// parameter's contextKey and a context filter look into it.
type EventContext struct {
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	SpecVersion     string    `json:"specversion"`
	Type            string    `json:"type"`
	DataContentType string    `json:"datacontenttype"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
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

// Names of the headers GitHub sends with every delivery.
const (
	GitHubEventHeader    = "X-GitHub-Event"
	GitHubDeliveryHeader = "X-GitHub-Delivery"
)

// GitHubEventData wraps a GitHub webhook delivery the way Argo's GitHub
// EventSource publishes it: the request headers under "headers" (canonical
// names, each a list of values) and the JSON body under "body", into which
// the EventSource copies X-GitHub-Event and X-GitHub-Delivery as plain
// strings. Sensor filters and parameters see exactly this document.
func GitHubEventData(eventType, deliveryID string, payload []byte) ([]byte, error) {
	var body map[string]any
	if err := json.Unmarshal(payload, &body); err != nil {
		return nil, fmt.Errorf("GitHub %s delivery %s: body is not a JSON object: %w", eventType, deliveryID, err)
	}
	body[GitHubEventHeader] = eventType
	body[GitHubDeliveryHeader] = deliveryID
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", "GitHub-Hookshot/kubeopencode-test")
	header.Set(GitHubEventHeader, eventType)
	header.Set(GitHubDeliveryHeader, deliveryID)
	return json.Marshal(map[string]any{"headers": header, "body": body})
}
