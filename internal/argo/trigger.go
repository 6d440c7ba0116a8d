package argo

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Labels Argo's k8s trigger adds to every object it creates.
const (
	LabelSensor          = "events.argoproj.io/sensor"
	LabelTrigger         = "events.argoproj.io/trigger"
	LabelActionTimestamp = "events.argoproj.io/action-timestamp"
)

// ErrNotTriggered is returned (wrapped in a *NotTriggeredError) when the
// events given do not fire the trigger: a dependency's filters rejected its
// event, or the trigger's conditions are not met by the events that passed.
var ErrNotTriggered = errors.New("trigger does not fire")

// NotTriggeredError explains why a trigger did not fire.
type NotTriggeredError struct {
	Sensor  string
	Trigger string
	// Conditions is the dependency expression that was not satisfied, as
	// the Sensor translated it.
	Conditions string
	// Rejected maps each dependency whose event its filters rejected to the
	// reason. The reason is the emulator's: the Sensor does not say which
	// filter dropped an event (see Logged).
	Rejected map[string]string
	// Logged maps each rejected dependency to the lines the Sensor logs for
	// the drop, each prefixed with its level.
	Logged map[string][]string
}

func (e *NotTriggeredError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sensor %s: trigger %q does not fire: dependency expression %q is not met", e.Sensor, e.Trigger, e.Conditions)
	deps := make([]string, 0, len(e.Rejected))
	for d := range e.Rejected {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	for _, d := range deps {
		fmt.Fprintf(&b, "; dependency %q rejected its event: %s", d, e.Rejected[d])
	}
	return b.String()
}

func (e *NotTriggeredError) Unwrap() error { return ErrNotTriggered }

type sensorSpec struct {
	Dependencies []eventDependency `json:"dependencies"`
	Triggers     []sensorTrigger   `json:"triggers"`
}

type sensorTrigger struct {
	Template   json.RawMessage    `json:"template"`
	Parameters []triggerParameter `json:"parameters,omitempty"`
}

type triggerTemplate struct {
	Name       string      `json:"name"`
	Conditions string      `json:"conditions,omitempty"`
	K8s        *k8sTrigger `json:"k8s,omitempty"`
}

type k8sTrigger struct {
	Operation  string             `json:"operation,omitempty"`
	Source     *artifactLocation  `json:"source,omitempty"`
	Parameters []triggerParameter `json:"parameters,omitempty"`
}

type artifactLocation struct {
	Resource  map[string]any `json:"resource,omitempty"`
	Inline    *string        `json:"inline,omitempty"`
	ConfigMap map[string]any `json:"configmap,omitempty"`
	File      map[string]any `json:"file,omitempty"`
	Git       map[string]any `json:"git,omitempty"`
	S3        map[string]any `json:"s3,omitempty"`
	URL       map[string]any `json:"url,omitempty"`
}

// triggerParameter is Argo's TriggerParameter.
type triggerParameter struct {
	Src       *parameterSource `json:"src"`
	Dest      string           `json:"dest"`
	Operation string           `json:"operation,omitempty"`
}

type parameterSource struct {
	DependencyName  string  `json:"dependencyName"`
	ContextKey      string  `json:"contextKey,omitempty"`
	ContextTemplate string  `json:"contextTemplate,omitempty"`
	DataKey         string  `json:"dataKey,omitempty"`
	DataTemplate    string  `json:"dataTemplate,omitempty"`
	Value           *string `json:"value,omitempty"`
	UseRawData      bool    `json:"useRawData,omitempty"`
}

// RenderTrigger runs one trigger of a Sensor on recorded events and returns
// the object its k8s trigger would create, exactly as Argo renders it:
// events maps a dependency name to the event data its EventSource published
// (for GitHub, see GitHubEventData), all arriving together. Each event must
// pass its dependency's filters and the trigger's conditions must hold;
// otherwise the error is a *NotTriggeredError (errors.Is(err,
// ErrNotTriggered)). A trigger whose conditions the Sensor cannot use
// returns a *DeadTriggerError (errors.Is(err, ErrNeverFires)). When the
// events would fire the trigger more than once, RenderTrigger fails; use
// RenderTriggerAll.
func RenderTrigger(sensor *unstructured.Unstructured, triggerName string, events map[string][]byte) (*unstructured.Unstructured, error) {
	now := time.Now()
	full, err := contextualise(sensor, events, metav1.NewTime(now.Truncate(time.Second)))
	if err != nil {
		return nil, err
	}
	return RenderTriggerEvents(sensor, triggerName, full, now)
}

// RenderTriggerAll is RenderTrigger returning every object the trigger
// creates: a trigger whose dependency expression has no "&&" runs once for
// each dependency whose event passed its filters, with that event alone.
func RenderTriggerAll(sensor *unstructured.Unstructured, triggerName string, events map[string][]byte) ([]*unstructured.Unstructured, error) {
	now := time.Now()
	full, err := contextualise(sensor, events, metav1.NewTime(now.Truncate(time.Second)))
	if err != nil {
		return nil, err
	}
	return RenderTriggerEventsAll(sensor, triggerName, full, now)
}

// contextualise gives each event data the context the EventSource of its
// dependency would have given it.
func contextualise(sensor *unstructured.Unstructured, events map[string][]byte, now metav1.Time) (map[string]Event, error) {
	spec, err := decodeSensor(sensor)
	if err != nil {
		return nil, err
	}
	full := make(map[string]Event, len(events))
	for dep, data := range events {
		d := spec.dependency(dep)
		if d == nil {
			return nil, fmt.Errorf("Sensor %s has no dependency %q (dependencies: %s)", sensorName(sensor), dep, spec.dependencyNames())
		}
		full[dep] = Event{
			Context: EventContext{
				ID:              "emulated-" + dep,
				Source:          d.EventSourceName,
				Subject:         d.EventName,
				SpecVersion:     "1.0",
				DataContentType: MediaTypeJSON,
				Time:            now,
			},
			Data: data,
		}
	}
	return full, nil
}

// RenderTriggerEvents is RenderTrigger with complete events (context
// included) and the time to record in the action-timestamp label.
func RenderTriggerEvents(sensor *unstructured.Unstructured, triggerName string, events map[string]Event, now time.Time) (*unstructured.Unstructured, error) {
	objs, err := RenderTriggerEventsAll(sensor, triggerName, events, now)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("Sensor %s: trigger %q fires %d times on these events (each dependency that passes fires a trigger whose dependency expression has no &&): use RenderTriggerAll",
			sensorName(sensor), triggerName, len(objs))
	}
	return objs[0], nil
}

// RenderTriggerEventsAll is RenderTriggerAll with complete events.
func RenderTriggerEventsAll(sensor *unstructured.Unstructured, triggerName string, events map[string]Event, now time.Time) ([]*unstructured.Unstructured, error) {
	name := sensorName(sensor)
	spec, err := decodeSensor(sensor)
	if err != nil {
		return nil, err
	}
	trig, tmpl, err := spec.trigger(triggerName)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s: %w", name, err)
	}
	expression, err := ParseConditions(tmpl.Conditions, spec.dependencyNameList())
	if err != nil {
		var dead *DeadTriggerError
		if errors.As(err, &dead) {
			dead.Sensor, dead.Trigger = name, triggerName
		}
		return nil, err
	}
	subscribed := map[string]bool{}
	for _, d := range expression.Dependencies {
		subscribed[d] = true
	}

	passed := map[string]bool{}
	rejected := map[string]string{}
	logged := map[string][]string{}
	for dep, ev := range events {
		d := spec.dependency(dep)
		if d == nil {
			return nil, fmt.Errorf("Sensor %s has no dependency %q (dependencies: %s)", name, dep, spec.dependencyNames())
		}
		if !subscribed[dep] {
			// The trigger is not subscribed to this dependency's events.
			continue
		}
		out, err := d.filterEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("Sensor %s: %w", name, err)
		}
		if out.pass {
			passed[dep] = true
			continue
		}
		rejected[dep] = out.reason
		logged[dep] = dropLog(dep, ev, out.err)
	}

	firings, err := expression.firings(passed)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s trigger %q: %w", name, triggerName, err)
	}
	if len(firings) == 0 {
		return nil, &NotTriggeredError{Sensor: name, Trigger: triggerName, Conditions: expression.Text, Rejected: rejected, Logged: logged}
	}
	var objs []*unstructured.Unstructured
	for _, deps := range firings {
		with := make(map[string]Event, len(deps))
		for _, d := range deps {
			with[d] = events[d]
		}
		obj, err := renderK8sTrigger(sensor, trig, tmpl, with, now)
		if err != nil {
			return nil, fmt.Errorf("Sensor %s trigger %q: %w", name, triggerName, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// dropLog is what the Sensor logs when a dependency's filters drop an
// event: the filtering error, if any, at Warn with the whole event; then,
// at Info, only that the dependency was not interested. (At Debug it also
// logs the event for a drop without error.) It never names the filter that
// did not match.
func dropLog(dep string, ev Event, filterErr error) []string {
	event := fmt.Sprintf("ID '%s', Source '%s', Time '%s', Data '%s'",
		ev.Context.ID, ev.Context.Source, ev.Context.Time.UTC().Format(time.RFC3339), ev.Data)
	var lines []string
	if filterErr != nil {
		lines = append(lines, fmt.Sprintf("warn: Event [%s] discarded due to filtering error: %s", event, filterErr))
	} else {
		lines = append(lines, fmt.Sprintf("debug: Event [%s] discarded due to filtering", event))
	}
	return append(lines, fmt.Sprintf("info: not interested in dependency %s (didn't pass filter)", dep))
}

// renderK8sTrigger renders the object of one run of a k8s trigger.
func renderK8sTrigger(sensor *unstructured.Unstructured, trig *sensorTrigger, tmpl triggerTemplate, passed map[string]Event, now time.Time) (*unstructured.Unstructured, error) {
	// Trigger-level parameters rewrite the template itself before it is used.
	if len(trig.Parameters) > 0 {
		raw, err := applyParameters(trig.Template, trig.Parameters, passed)
		if err != nil {
			return nil, err
		}
		tmpl = triggerTemplate{}
		if err := unmarshalArgo(raw, &tmpl); err != nil {
			return nil, fmt.Errorf("template after parameters: %w", err)
		}
	}
	if tmpl.K8s == nil {
		return nil, errors.New("not a k8s trigger: only template.k8s is emulated")
	}
	if op := tmpl.K8s.Operation; op != "" && op != "create" {
		return nil, fmt.Errorf("k8s operation %q is not emulated (only create)", op)
	}
	resource, err := sourceResource(tmpl.K8s.Source)
	if err != nil {
		return nil, err
	}
	rendered, err := applyParameters(resource, tmpl.K8s.Parameters, passed)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(rendered); err != nil {
		return nil, fmt.Errorf("rendered resource: %w", err)
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(sensor.GetNamespace())
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelSensor] = sensor.GetName()
	labels[LabelTrigger] = tmpl.Name
	labels[LabelActionTimestamp] = strconv.FormatInt(now.UnixMilli(), 10)
	obj.SetLabels(labels)
	return obj, nil
}

func sensorName(s *unstructured.Unstructured) string {
	if s.GetNamespace() == "" {
		return s.GetName()
	}
	return s.GetNamespace() + "/" + s.GetName()
}

func decodeSensor(sensor *unstructured.Unstructured) (*sensorSpec, error) {
	if sensor == nil {
		return nil, errors.New("no Sensor given")
	}
	if sensor.GetAPIVersion() != APIVersion || sensor.GetKind() != "Sensor" {
		return nil, fmt.Errorf("%s is a %s %s, not an %s Sensor", sensorName(sensor), sensor.GetAPIVersion(), sensor.GetKind(), APIVersion)
	}
	raw, err := json.Marshal(sensor.Object["spec"])
	if err != nil {
		return nil, fmt.Errorf("Sensor %s: %w", sensorName(sensor), err)
	}
	var spec sensorSpec
	if err := unmarshalArgo(raw, &spec); err != nil {
		return nil, fmt.Errorf("Sensor %s: spec: %w", sensorName(sensor), err)
	}
	return &spec, nil
}

// unmarshalArgo decodes JSON as the Argo Events controller reads a Sensor
// from the API server: field names match only in their exact case, and
// fields the Sensor type does not have are dropped. (The Sensor CRD keeps
// unknown fields, but the controller's client decodes the Sensor into its
// Go type this way and hands the Sensor pod that type re-encoded, so a
// misspelled field, such as datakey for dataKey, is simply gone.)
func unmarshalArgo(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}

func (s *sensorSpec) dependency(name string) *eventDependency {
	for i := range s.Dependencies {
		if s.Dependencies[i].Name == name {
			return &s.Dependencies[i]
		}
	}
	return nil
}

func (s *sensorSpec) dependencyNameList() []string {
	names := make([]string, 0, len(s.Dependencies))
	for _, d := range s.Dependencies {
		names = append(names, d.Name)
	}
	return names
}

func (s *sensorSpec) dependencyNames() string { return strings.Join(s.dependencyNameList(), ", ") }

func (s *sensorSpec) trigger(name string) (*sensorTrigger, triggerTemplate, error) {
	var names []string
	for i := range s.Triggers {
		var t triggerTemplate
		if err := unmarshalArgo(s.Triggers[i].Template, &t); err != nil {
			return nil, t, fmt.Errorf("trigger %d: template: %w", i, err)
		}
		if t.Name == name {
			return &s.Triggers[i], t, nil
		}
		names = append(names, t.Name)
	}
	return nil, triggerTemplate{}, fmt.Errorf("no trigger %q (triggers: %s)", name, strings.Join(names, ", "))
}

func sourceResource(src *artifactLocation) ([]byte, error) {
	switch {
	case src == nil:
		return nil, errors.New("k8s.source is not set")
	case src.Resource != nil:
		return json.Marshal(src.Resource)
	case src.Inline != nil:
		js, err := yaml.YAMLToJSON([]byte(*src.Inline))
		if err != nil {
			return nil, fmt.Errorf("k8s.source.inline: %w", err)
		}
		return js, nil
	default:
		return nil, errors.New("k8s.source must be resource or inline: configmap, file, git, s3 and url sources are not emulated")
	}
}

// valueString is gjson's name for a string value; any other kind of value
// (a number, a JSON block) may be inserted raw when useRawData is set.
const valueString = "String"

// applyParameters sets each parameter's value at its dest path (sjson
// syntax) in the JSON document, following Argo's rules: a value that
// resolves to nothing is skipped; prepend and append join strings with the
// current value; only with useRawData is a JSON block or number inserted
// as JSON rather than as a string.
func applyParameters(doc []byte, params []triggerParameter, events map[string]Event) ([]byte, error) {
	for i, p := range params {
		if p.Src == nil {
			return nil, fmt.Errorf("parameter %d (dest %s): src is not set", i, p.Dest)
		}
		value, kind, err := resolveParameter(p.Src, events)
		if err != nil {
			return nil, fmt.Errorf("parameter %d (dest %s): %w", i, p.Dest, err)
		}
		if value == nil {
			continue
		}
		v := *value
		switch p.Operation {
		case "", "overwrite":
		case "append", "prepend":
			if cur := gjson.GetBytes(doc, p.Dest); cur.Exists() {
				kind = valueString
				if p.Operation == "append" {
					v = cur.String() + v
				} else {
					v = v + cur.String()
				}
			}
		default:
			return nil, fmt.Errorf("parameter %d (dest %s): operation %q must be overwrite, prepend or append", i, p.Dest, p.Operation)
		}
		if kind != valueString && p.Src.UseRawData {
			doc, err = sjson.SetRawBytes(doc, p.Dest, []byte(v))
		} else {
			doc, err = sjson.SetBytes(doc, p.Dest, v)
		}
		if err != nil {
			return nil, fmt.Errorf("parameter %d: dest %s: %w", i, p.Dest, err)
		}
	}
	return doc, nil
}

// resolveParameter returns the parameter's value and its gjson kind, or a
// nil value when the parameter refers to a dependency that has no event and
// has no default (Argo skips it: this happens with "||" conditions).
func resolveParameter(src *parameterSource, events map[string]Event) (*string, string, error) {
	ev, ok := events[src.DependencyName]
	if !ok {
		if src.Value != nil {
			v := *src.Value
			return &v, valueString, nil
		}
		return nil, valueString, nil
	}
	if src.ContextKey == "" && src.ContextTemplate == "" && src.DataKey == "" && src.DataTemplate == "" {
		if src.Value != nil {
			v := *src.Value
			return &v, valueString, nil
		}
		whole, err := json.Marshal(ev)
		if err != nil {
			return nil, "", err
		}
		v := string(whole)
		return &v, valueString, nil
	}

	var payload []byte
	var key, tmpl string
	var payloadErr error
	if src.ContextKey != "" || src.ContextTemplate != "" {
		key, tmpl = src.ContextKey, src.ContextTemplate
		payload, payloadErr = json.Marshal(ev.Context)
	}
	// When both are given, the data selection wins, as in Argo.
	if src.DataKey != "" || src.DataTemplate != "" {
		key, tmpl = src.DataKey, src.DataTemplate
		payload, payloadErr = eventDataJSON(ev)
	}
	if payloadErr != nil {
		if src.Value != nil {
			v := *src.Value
			return &v, valueString, nil
		}
		return nil, "", payloadErr
	}

	var failures []string
	if tmpl != "" {
		out, err := executeTemplate(tmpl, gjson.ParseBytes(payload).Value())
		if err == nil {
			return &out, valueString, nil
		}
		failures = append(failures, "template: "+err.Error())
	}
	if key != "" {
		res := gjson.GetBytes(payload, key)
		if res.Exists() {
			var v string
			switch res.Type {
			case gjson.JSON, gjson.Null:
				v = res.Raw
			default:
				v = res.String()
			}
			return &v, res.Type.String(), nil
		}
		failures = append(failures, fmt.Sprintf("key %s does not exist in the event", key))
	}
	if src.Value != nil {
		v := *src.Value
		return &v, valueString, nil
	}
	return nil, "", fmt.Errorf("dependency %q: no value and no default (%s)", src.DependencyName, strings.Join(failures, "; "))
}

func eventDataJSON(ev Event) ([]byte, error) {
	switch ev.Context.DataContentType {
	case MediaTypeJSON:
		if !json.Valid(ev.Data) {
			return nil, errors.New("event data is not valid JSON")
		}
		return ev.Data, nil
	case "application/yaml":
		return yaml.YAMLToJSON(ev.Data)
	default:
		return nil, fmt.Errorf("unsupported event data content type %q", ev.Context.DataContentType)
	}
}
