package argo

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Knetic/govaluate"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	// Conditions is the dependency expression that was not satisfied.
	Conditions string
	// Rejected maps each dependency whose event its filters rejected to the reason.
	Rejected map[string]string
}

func (e *NotTriggeredError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sensor %s: trigger %q does not fire: conditions %q are not met", e.Sensor, e.Trigger, e.Conditions)
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
// (for GitHub, see GitHubEventData). Each event must pass its dependency's
// filters and the trigger's conditions must hold; otherwise the error is a
// *NotTriggeredError (errors.Is(err, ErrNotTriggered)).
func RenderTrigger(sensor *unstructured.Unstructured, triggerName string, events map[string][]byte) (*unstructured.Unstructured, error) {
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
			},
			Data: data,
		}
	}
	return RenderTriggerEvents(sensor, triggerName, full, time.Now())
}

// RenderTriggerEvents is RenderTrigger with complete events (context
// included) and the time to record in the action-timestamp label.
func RenderTriggerEvents(sensor *unstructured.Unstructured, triggerName string, events map[string]Event, now time.Time) (*unstructured.Unstructured, error) {
	name := sensorName(sensor)
	spec, err := decodeSensor(sensor)
	if err != nil {
		return nil, err
	}
	trig, tmpl, err := spec.trigger(triggerName)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s: %w", name, err)
	}

	passed := map[string]Event{}
	rejected := map[string]string{}
	for dep, ev := range events {
		d := spec.dependency(dep)
		if d == nil {
			return nil, fmt.Errorf("Sensor %s has no dependency %q (dependencies: %s)", name, dep, spec.dependencyNames())
		}
		ok, reason, err := d.filterEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("Sensor %s: %w", name, err)
		}
		if ok {
			passed[dep] = ev
		} else {
			rejected[dep] = reason
		}
	}

	conditions := tmpl.Conditions
	if conditions == "" {
		conditions = strings.Join(spec.dependencyNameList(), " && ")
	}
	fire, err := evaluateConditions(conditions, spec.dependencyNameList(), passed)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s trigger %q: conditions %q: %w", name, triggerName, conditions, err)
	}
	if !fire {
		return nil, &NotTriggeredError{Sensor: name, Trigger: triggerName, Conditions: conditions, Rejected: rejected}
	}

	// Trigger-level parameters rewrite the template itself before it is used.
	if len(trig.Parameters) > 0 {
		raw, err := applyParameters(trig.Template, trig.Parameters, passed)
		if err != nil {
			return nil, fmt.Errorf("Sensor %s trigger %q: %w", name, triggerName, err)
		}
		if err := json.Unmarshal(raw, &tmpl); err != nil {
			return nil, fmt.Errorf("Sensor %s trigger %q: template after parameters: %w", name, triggerName, err)
		}
	}
	if tmpl.K8s == nil {
		return nil, fmt.Errorf("Sensor %s trigger %q is not a k8s trigger: only template.k8s is emulated", name, triggerName)
	}
	if op := tmpl.K8s.Operation; op != "" && op != "create" {
		return nil, fmt.Errorf("Sensor %s trigger %q: k8s operation %q is not emulated (only create)", name, triggerName, op)
	}
	resource, err := sourceResource(tmpl.K8s.Source)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s trigger %q: %w", name, triggerName, err)
	}
	rendered, err := applyParameters(resource, tmpl.K8s.Parameters, passed)
	if err != nil {
		return nil, fmt.Errorf("Sensor %s trigger %q: %w", name, triggerName, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(rendered); err != nil {
		return nil, fmt.Errorf("Sensor %s trigger %q: rendered resource: %w", name, triggerName, err)
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
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("Sensor %s: spec: %w", sensorName(sensor), err)
	}
	return &spec, nil
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
		if err := json.Unmarshal(s.Triggers[i].Template, &t); err != nil {
			return nil, t, fmt.Errorf("trigger %d: template: %w", i, err)
		}
		if t.Name == name {
			return &s.Triggers[i], t, nil
		}
		names = append(names, t.Name)
	}
	return nil, triggerTemplate{}, fmt.Errorf("no trigger %q (triggers: %s)", name, strings.Join(names, ", "))
}

// evaluateConditions evaluates a trigger's dependency expression ("a && (b
// || c)") with govaluate, as the Sensor does, each dependency being true
// when its event passed its filters.
func evaluateConditions(conditions string, deps []string, passed map[string]Event) (bool, error) {
	// govaluate reads "-" as minus; Argo rewrites it the same way.
	expr := strings.ReplaceAll(conditions, "-", "_")
	params := map[string]any{}
	for _, d := range deps {
		_, ok := passed[d]
		params[strings.ReplaceAll(d, "-", "_")] = ok
	}
	e, err := govaluate.NewEvaluableExpression(expr)
	if err != nil {
		return false, err
	}
	for _, v := range e.Vars() {
		if _, ok := params[v]; !ok {
			return false, fmt.Errorf("%q is not a dependency of the Sensor", v)
		}
	}
	res, err := e.Evaluate(params)
	if err != nil {
		return false, err
	}
	b, ok := res.(bool)
	if !ok {
		return false, fmt.Errorf("evaluates to %v, not to a bool", res)
	}
	return b, nil
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
