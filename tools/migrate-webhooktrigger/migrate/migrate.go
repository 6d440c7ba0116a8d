// Package migrate converts WebhookTrigger objects, the kubeopencode.io
// webhook receiver that the project no longer ships, into an Argo Events
// GitHub EventSource and a Sensor whose k8s triggers create the same Tasks,
// and reports everything it could not carry over.
package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/internal/argo"
)

// Options tune the generated objects.
type Options struct {
	// Repositories ("owner/name") and Organizations fill the EventSource's
	// repositories or organizations, which Argo requires. Without either, a
	// placeholder is written and reported.
	Repositories  []string
	Organizations []string
	// WebhookURL is the public URL GitHub posts to (without the endpoint).
	WebhookURL string
	// AllowPartial writes the rules that translate and leaves out the rest
	// instead of failing.
	AllowPartial bool
}

// Finding is one line of the migration report.
type Finding struct {
	// Object is "namespace/name" of the WebhookTrigger.
	Object string
	// Rule is the rule's name, empty for findings about the whole object.
	Rule string
	// Translated false means something was not carried over.
	Translated bool
	// Warning marks a translated item that needs a person's attention.
	Warning bool
	Message string
}

func (f Finding) String() string {
	level := "ok"
	switch {
	case !f.Translated:
		level = "NOT TRANSLATED"
	case f.Warning:
		level = "warning"
	}
	where := "WebhookTrigger " + f.Object
	if f.Rule != "" {
		where += " rule " + f.Rule
	}
	return fmt.Sprintf("%s: %s: %s", level, where, f.Message)
}

// Result is the outcome of a migration.
type Result struct {
	// Objects are the generated manifests, in apply order.
	Objects []map[string]any
	// Findings is the report, in input order.
	Findings []Finding
}

// Untranslated counts the findings that were not carried over.
func (r *Result) Untranslated() int {
	n := 0
	for _, f := range r.Findings {
		if !f.Translated {
			n++
		}
	}
	return n
}

// YAML renders the generated objects as one multi-document stream.
func (r *Result) YAML(header string) ([]byte, error) {
	var b bytes.Buffer
	if header != "" {
		for _, line := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
			b.WriteString("# " + line + "\n")
		}
	}
	for i, o := range r.Objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// ErrUntranslated is returned by Migrate when something could not be
// carried over and Options.AllowPartial is false.
var ErrUntranslated = errors.New("some of the WebhookTrigger could not be translated")

type webhookTrigger struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Auth *struct {
			HMAC *struct {
				SecretRef *struct {
					Name string `json:"name"`
					Key  string `json:"key"`
				} `json:"secretRef"`
				Header    string `json:"header,omitempty"`
				Algorithm string `json:"algorithm,omitempty"`
			} `json:"hmac,omitempty"`
		} `json:"auth,omitempty"`
		Rules []struct {
			Name             string `json:"name"`
			Filter           string `json:"filter,omitempty"`
			ResourceTemplate struct {
				Task map[string]any `json:"task"`
			} `json:"resourceTemplate"`
		} `json:"rules"`
	} `json:"spec"`
	Status map[string]any `json:"status,omitempty"`
}

// Migrate reads WebhookTrigger YAML (one or more documents) and returns the
// Argo Events objects that replace them with the report. It returns
// ErrUntranslated (with the result) when anything was left out and
// opts.AllowPartial is false.
func Migrate(name string, r io.Reader, opts Options) (*Result, error) {
	docs, err := argo.ReadDocuments(name, r)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	found := 0
	for _, d := range docs {
		if d.Kind() != "WebhookTrigger" {
			res.Findings = append(res.Findings, Finding{
				Object: fmt.Sprintf("%s document %d", name, d.Index), Translated: false,
				Message: fmt.Sprintf("%s %s is not a WebhookTrigger; it was left out", d.APIVersion(), d.Kind()),
			})
			continue
		}
		found++
		raw, err := yaml.Marshal(d.Object)
		if err != nil {
			return nil, err
		}
		if err := migrateOne(raw, opts, res); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, d.Index, err)
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("%s holds no WebhookTrigger (kind: WebhookTrigger, apiVersion: kubeopencode.io/v1alpha1)", name)
	}
	if res.Untranslated() > 0 && !opts.AllowPartial {
		return res, ErrUntranslated
	}
	return res, nil
}

var (
	dnsLabel     = regexp.MustCompile(`[^a-z0-9-]+`)
	unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)
)

// k8sName turns a rule name into something usable as a dependency,
// trigger and generateName prefix.
func k8sName(s string) string {
	n := strings.Trim(dnsLabel.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if n == "" {
		n = "rule"
	}
	if len(n) > 40 {
		n = strings.TrimRight(n[:40], "-")
	}
	return n
}

var knownTaskFields = map[string]bool{"description": true, "agentRef": true, "timeout": true, "contexts": true}

func migrateOne(raw []byte, opts Options, res *Result) error {
	var wt webhookTrigger
	strictErr := yaml.UnmarshalStrict(raw, &wt)
	if err := yaml.Unmarshal(raw, &wt); err != nil {
		return err
	}
	obj := wt.Metadata.Name
	if wt.Metadata.Namespace != "" {
		obj = wt.Metadata.Namespace + "/" + obj
	}
	add := func(rule string, ok, warn bool, format string, args ...any) {
		res.Findings = append(res.Findings, Finding{Object: obj, Rule: rule, Translated: ok, Warning: warn, Message: fmt.Sprintf(format, args...)})
	}
	if wt.Metadata.Name == "" {
		return errors.New("WebhookTrigger has no metadata.name")
	}
	if strictErr != nil {
		var unknown []string
		for _, m := range unknownField.FindAllStringSubmatch(strictErr.Error(), -1) {
			unknown = append(unknown, m[1])
		}
		if len(unknown) == 0 {
			unknown = []string{strictErr.Error()}
		}
		add("", false, false, "%s: no Argo equivalent is known, so it was left out", strings.Join(unknown, ", "))
	}
	ns := wt.Metadata.Namespace
	base := k8sName(wt.Metadata.Name)
	eventName := base

	// The EventSource.
	gh := map[string]any{
		"webhook": map[string]any{
			"endpoint": "/" + base,
			"port":     "12000",
			"method":   "POST",
			"url":      firstNonEmpty(opts.WebhookURL, "https://hooks.example.com"),
		},
		"contentType": "json",
		"active":      true,
		"insecure":    false,
	}
	if opts.WebhookURL == "" {
		add("", true, true, "the webhook URL is a placeholder: set spec.github.%s.webhook.url (or pass --webhook-url) and point the repository's webhook at it plus %s", eventName, "/"+base)
	}
	switch {
	case len(opts.Organizations) > 0:
		gh["organizations"] = toAnySlice(opts.Organizations)
	case len(opts.Repositories) > 0:
		gh["repositories"] = repositories(opts.Repositories)
	default:
		gh["repositories"] = []any{map[string]any{"owner": "example-org", "names": []any{"example-repo"}}}
		add("", true, true, "Argo requires repositories or organizations on a GitHub EventSource: replace the example-org/example-repo placeholder (or pass --repository owner/name)")
	}
	if a := wt.Spec.Auth; a != nil && a.HMAC != nil && a.HMAC.SecretRef != nil && a.HMAC.SecretRef.Name != "" {
		h := a.HMAC
		key := h.SecretRef.Key
		if key == "" {
			key = "secret"
			add("", true, true, "spec.auth.hmac.secretRef names no key: the output reads key %q of Secret %s; change webhookSecret.key if the secret is stored under another key", key, h.SecretRef.Name)
		}
		gh["webhookSecret"] = map[string]any{"name": h.SecretRef.Name, "key": key}
		add("", true, false, "HMAC secret %s key %s became the GitHub webhook secret", h.SecretRef.Name, key)
		if hd := strings.ToLower(h.Header); hd != "" && hd != "x-hub-signature-256" && hd != "x-hub-signature" {
			add("", false, false, "spec.auth.hmac.header %s: Argo's GitHub EventSource checks only GitHub's X-Hub-Signature-256 (or X-Hub-Signature)", h.Header)
		}
		if alg := strings.ToLower(h.Algorithm); alg != "" && alg != "sha256" && alg != "sha1" {
			add("", false, false, "spec.auth.hmac.algorithm %s: Argo's GitHub EventSource verifies sha256 (and sha1) signatures only", h.Algorithm)
		}
	} else {
		add("", false, false, "spec.auth.hmac.secretRef is not set: the EventSource would accept unsigned deliveries from anyone; create a Secret with the GitHub webhook secret and set spec.auth.hmac.secretRef")
	}

	// One dependency and one trigger per rule.
	var rules []*sensorRule
	var events []string
	sawEventType, seesPush := false, false
	names := newNameSet()
	for i, rule := range wt.Spec.Rules {
		ruleName := firstNonEmpty(rule.Name, fmt.Sprintf("rule-%d", i))
		// Trigger names become the events.argoproj.io/trigger label of
		// every Task, so they must be label values; dependency names appear
		// in the trigger's conditions, which the Sensor parses as an
		// expression, so each starts with "rule-" whatever the rule is
		// called ("2nd-review", "in", "not", ...).
		triggerName := names.trigger(k8sName(ruleName))
		tf, err := translateFilter(rule.Filter)
		if err != nil {
			add(ruleName, false, false, "filter: %v; the rule was left out", err)
			continue
		}
		if rule.Filter == "" {
			add(ruleName, true, true, "no filter: every delivery starts a Task")
		} else {
			add(ruleName, true, false, "filter became %s", describeFilter(tf))
		}
		for _, w := range tf.Warnings {
			add(ruleName, true, true, "%s", w)
		}
		if len(tf.EventTypes) > 0 {
			sawEventType = true
		}
		for _, e := range tf.EventTypes {
			events = appendUnique(events, e)
		}
		var depNames []string
		if len(tf.Alternatives) > 1 {
			for j := range tf.Alternatives {
				depNames = append(depNames, names.dependency(fmt.Sprintf("rule-%s-%d", triggerName, j+1)))
			}
		} else {
			depNames = []string{names.dependency("rule-" + triggerName)}
		}
		trigger, err := taskTrigger(ruleName, triggerName, depNames, base, ns, rule.ResourceTemplate.Task, func(ok, warn bool, format string, args ...any) {
			add(ruleName, ok, warn, format, args...)
		})
		if err != nil {
			add(ruleName, false, false, "%v; the rule was left out", err)
			continue
		}
		if len(depNames) > 1 {
			add(ruleName, true, false, "became trigger %s; its %d alternatives became dependencies %s, any of which fires the trigger", triggerName, len(depNames), strings.Join(depNames, ", "))
		} else {
			add(ruleName, true, false, "became trigger %s with dependency %s", triggerName, depNames[0])
		}
		if len(tf.EventTypes) == 0 || contains(tf.EventTypes, "push") {
			seesPush = true
		}
		r := &sensorRule{name: ruleName, trigger: trigger, conditions: strings.Join(depNames, " || ")}
		for j, name := range depNames {
			dep := map[string]any{"name": name, "eventSourceName": base, "eventName": eventName}
			if j < len(tf.Alternatives) && len(tf.Alternatives[j]) > 0 {
				dep["filters"] = map[string]any{"data": mapsToAny(tf.Alternatives[j])}
			}
			r.deps = append(r.deps, dep)
		}
		rules = append(rules, r)
	}
	if !sawEventType {
		add("", true, true, "no rule tests headers[\"x-github-event\"]: the output assumes the deliveries come from GitHub")
	}
	if len(events) == 0 {
		events = []string{"*"}
	}
	sort.Strings(events)
	gh["events"] = toAnySlice(events)
	if seesPush {
		// GitHub sends push deliveries of up to 25 MB; the EventSource's
		// default limit is 1 MiB, and a larger delivery is answered with
		// HTTP 400 and never reaches the Sensor.
		gh["webhook"].(map[string]any)["maxPayloadSize"] = argo.GitHubMaxPayloadSize
		add("", true, true, "a rule matches push events, whose deliveries GitHub sends at up to 25 MB: webhook.maxPayloadSize is set to %d (the EventSource's default, 1 MiB, rejects larger pushes with HTTP 400); the EventBus must carry such events too: raise the EventBus's spec.jetstream.maxPayload (default 1MB) to at least 26MB (see docs/argo-events.md, Large deliveries)", argo.GitHubMaxPayloadSize)
	}

	deps, triggers := usableTriggers(rules, func(rule string, err error) {
		add(rule, false, false, "%v; the rule was left out", err)
	})

	meta := func(name string) map[string]any {
		m := map[string]any{"name": name}
		if ns != "" {
			m["namespace"] = ns
		}
		return m
	}
	saName := base + "-sensor"
	res.Objects = append(res.Objects,
		map[string]any{
			"apiVersion": argo.APIVersion, "kind": "EventSource", "metadata": meta(base),
			"spec": map[string]any{
				"template": podTemplate(base + "-eventsource"),
				"service":  map[string]any{"ports": []any{map[string]any{"name": "webhook", "port": 12000, "targetPort": 12000}}},
				"github":   map[string]any{eventName: gh},
			},
		},
	)
	if len(triggers) == 0 {
		add("", false, false, "no rule could be translated, so no Sensor was written")
		return nil
	}
	res.Objects = append(res.Objects,
		map[string]any{
			"apiVersion": argo.APIVersion, "kind": "Sensor", "metadata": meta(base),
			"spec": map[string]any{
				"template":     podTemplate(saName),
				"dependencies": deps,
				"triggers":     triggers,
			},
		},
		map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(base + "-eventsource"), "automountServiceAccountToken": false},
		map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(saName)},
		map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(saName + "-create-tasks"),
			"rules": []any{map[string]any{"apiGroups": []any{"kubeopencode.io"}, "resources": []any{"tasks"}, "verbs": []any{"create"}}},
		},
		map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(saName + "-create-tasks"),
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": saName + "-create-tasks"},
			"subjects": []any{withNamespace(map[string]any{"kind": "ServiceAccount", "name": saName}, ns)},
		},
	)
	return nil
}

// RuleAnnotation on every Task a migrated trigger creates holds the name
// of the WebhookTrigger rule it came from.
const RuleAnnotation = "kubeopencode.io/webhooktrigger-rule"

// sensorRule is one translated rule: its trigger and dependencies.
type sensorRule struct {
	name       string
	conditions string
	trigger    map[string]any
	deps       []map[string]any
}

// usableTriggers returns the dependencies and triggers of the rules whose
// conditions survive the Sensor's own translation and parsing of them
// (argo.ParseConditions): a trigger whose conditions do not is accepted by
// Argo and never runs, so its rule is reported through fail instead.
func usableTriggers(rules []*sensorRule, fail func(rule string, err error)) (deps, triggers []any) {
	var all []string
	for _, r := range rules {
		for _, d := range r.deps {
			all = append(all, d["name"].(string))
		}
	}
	for _, r := range rules {
		if _, err := argo.ParseConditions(r.conditions, all); err != nil {
			fail(r.name, fmt.Errorf("Argo's Sensor cannot use the conditions %q of trigger %s: %w", r.conditions, r.trigger["template"].(map[string]any)["name"], err))
			continue
		}
		for _, d := range r.deps {
			deps = append(deps, d)
		}
		triggers = append(triggers, r.trigger)
	}
	return deps, triggers
}

// nameSet hands out unique trigger and dependency names, deterministically:
// a name already taken gets "-2", "-3", ... appended.
type nameSet struct{ triggers, deps map[string]bool }

func newNameSet() *nameSet {
	return &nameSet{triggers: map[string]bool{}, deps: map[string]bool{}}
}

func (n *nameSet) trigger(name string) string { return unique(n.triggers, name) }

func (n *nameSet) dependency(name string) string { return unique(n.deps, name) }

func unique(used map[string]bool, name string) string {
	candidate := name
	for i := 2; used[candidate]; i++ {
		candidate = fmt.Sprintf("%s-%d", name, i)
	}
	used[candidate] = true
	return candidate
}

// podTemplate runs an EventSource or Sensor pod as the given ServiceAccount,
// non-root with a read-only root filesystem (and a writable /tmp), like the
// shipped example in manifests/argo-events.
func podTemplate(serviceAccount string) map[string]any {
	return map[string]any{
		"serviceAccountName": serviceAccount,
		"securityContext": map[string]any{
			"runAsNonRoot":   true,
			"runAsUser":      65532,
			"runAsGroup":     65532,
			"seccompProfile": map[string]any{"type": "RuntimeDefault"},
		},
		"container": map[string]any{
			"securityContext": map[string]any{
				"allowPrivilegeEscalation": false,
				"readOnlyRootFilesystem":   true,
				"capabilities":             map[string]any{"drop": []any{"ALL"}},
			},
			"volumeMounts": []any{map[string]any{"name": "tmp", "mountPath": "/tmp"}},
		},
		"volumes": []any{map[string]any{"name": "tmp", "emptyDir": map[string]any{}}},
	}
}

// taskTrigger builds the k8s trigger that creates the rule's Task: static
// fields go into source.resource, every templated string becomes a
// parameter at its path.
func taskTrigger(ruleName, triggerName string, depNames []string, base, ns string, task map[string]any, report func(ok, warn bool, format string, args ...any)) (map[string]any, error) {
	if task == nil {
		return nil, errors.New("resourceTemplate.task is not set")
	}
	spec := map[string]any{}
	for k, v := range task {
		if !knownTaskFields[k] {
			report(false, false, "resourceTemplate.task.%s is not a Task spec field (description, agentRef, timeout, contexts); it was left out", k)
			continue
		}
		spec[k] = v
	}
	var params []any
	var errs []string
	walkStrings(spec, []string{"spec"}, func(path []string, s string) string {
		if !hasTemplate(s) {
			return s
		}
		tt, err := translateTemplate(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", strings.Join(path, "."), err))
			return s
		}
		// With several dependencies only the one whose event arrived has a
		// value; Argo skips the parameters of the others.
		for _, dep := range depNames {
			src := map[string]any{"dependencyName": dep}
			if tt.DataKey != "" {
				src["dataKey"] = tt.DataKey
			} else {
				src["dataTemplate"] = tt.DataTemplate
			}
			params = append(params, map[string]any{"src": src, "dest": gjsonPath(path)})
		}
		report(true, false, "%s became a parameter (%s)", strings.Join(path, "."), describeTemplate(tt))
		if len(path) == 2 && path[1] == "description" {
			if u := untrustedFields(tt.Fields); len(u) > 0 {
				report(true, true, "the description puts %s, text written by whoever caused the event, straight into the prompt: wrap it as untrusted data (see docs/argo-events.md, Security)", strings.Join(u, ", "))
			}
		}
		// Argo overwrites the value; keep a readable placeholder.
		return ""
	})
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	metadata := map[string]any{
		"generateName": k8sName(base+"-"+triggerName) + "-",
		"labels":       map[string]any{"app.kubernetes.io/managed-by": "argo-events"},
		// The rule's own name, which the trigger name may only approximate.
		"annotations": map[string]any{RuleAnnotation: ruleName},
	}
	if ns != "" {
		metadata["namespace"] = ns
	}
	k8s := map[string]any{
		"operation": "create",
		"source": map[string]any{"resource": map[string]any{
			"apiVersion": "kubeopencode.io/v1alpha1",
			"kind":       "Task",
			"metadata":   metadata,
			"spec":       spec,
		}},
	}
	if len(params) > 0 {
		k8s["parameters"] = params
	}
	return map[string]any{
		"template": map[string]any{
			"name":       triggerName,
			"conditions": strings.Join(depNames, " || "),
			"k8s":        k8s,
		},
		"retryStrategy": map[string]any{"steps": 3, "duration": "2s", "factor": 2},
	}, nil
}

// walkStrings calls fn on every string in v (maps in sorted key order) and
// replaces it with fn's result.
func walkStrings(v any, path []string, fn func([]string, string) string) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			x[k] = walkStrings(x[k], append(append([]string{}, path...), k), fn)
		}
		return x
	case []any:
		for i := range x {
			x[i] = walkStrings(x[i], append(append([]string{}, path...), fmt.Sprint(i)), fn)
		}
		return x
	case string:
		return fn(path, x)
	}
	return v
}

func describeFilter(tf *translatedFilter) string {
	var parts []string
	for _, alt := range tf.Alternatives {
		var paths []string
		for _, f := range alt {
			paths = append(paths, fmt.Sprint(f["path"]))
		}
		parts = append(parts, fmt.Sprintf("%d data filter(s) on %s", len(alt), strings.Join(paths, ", ")))
	}
	if len(parts) == 0 {
		return "no filter"
	}
	return strings.Join(parts, " or ")
}

func repositories(list []string) []any {
	byOwner := map[string][]any{}
	var owners []string
	for _, r := range list {
		owner, name, _ := strings.Cut(r, "/")
		if _, ok := byOwner[owner]; !ok {
			owners = append(owners, owner)
		}
		byOwner[owner] = append(byOwner[owner], name)
	}
	var out []any
	for _, o := range owners {
		out = append(out, map[string]any{"owner": o, "names": byOwner[o]})
	}
	return out
}

func withNamespace(m map[string]any, ns string) map[string]any {
	if ns != "" {
		m["namespace"] = ns
	}
	return m
}

func mapsToAny(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
