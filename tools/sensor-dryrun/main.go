// Command sensor-dryrun runs a GitHub webhook delivery through an Argo
// Events Sensor the way Argo Events v1.9.11 would (internal/argo), and says
// for each trigger whether it fires and what it creates, or why not: which
// filter dropped the event and what the Sensor would have logged.
//
//	go run ./tools/sensor-dryrun -sensor manifests/argo-events/sensor-github.yaml \
//	  -event pull_request -payload delivery.json \
//	  [-eventsource manifests/argo-events/eventsource-github.yaml] [-trigger NAME]
//
// The payload is the delivery's body as GitHub sent it (Settings → Webhooks
// → Recent deliveries → Request → Payload). With -eventsource, the delivery
// goes through that EventSource's limits and reaches only the dependencies
// that name it; without, the EventSource defaults apply and every dependency
// receives it. The signature is taken as valid.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/internal/argo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sensor-dryrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sensorFile := fs.String("sensor", "", "YAML file holding the Sensor")
	sensorName := fs.String("name", "", "the Sensor's name, when the file holds several")
	eventSourceFile := fs.String("eventsource", "", "YAML file holding the GitHub EventSource (optional)")
	eventType := fs.String("event", "", "GitHub event type, the X-GitHub-Event header (pull_request, issue_comment, push, ...)")
	payloadFile := fs.String("payload", "", "the delivery's JSON body")
	delivery := fs.String("delivery", "00000000-0000-0000-0000-000000000000", "the X-GitHub-Delivery id")
	trigger := fs.String("trigger", "", "run only this trigger")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sensorFile == "" || *eventType == "" || *payloadFile == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: sensor-dryrun -sensor FILE -event TYPE -payload FILE [-eventsource FILE] [-trigger NAME] [-name SENSOR]")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sensor-dryrun: %v\n", err)
		return 1
	}
	sensor, err := readObject(*sensorFile, "Sensor", *sensorName)
	if err != nil {
		return fail(err)
	}
	payload, err := os.ReadFile(*payloadFile)
	if err != nil {
		return fail(err)
	}

	source := argo.GitHubEventSource{Secret: []byte(argo.TestWebhookSecret)}
	receives := func(dep map[string]any) bool { return true }
	if *eventSourceFile != "" {
		es, err := readObject(*eventSourceFile, "EventSource", "")
		if err != nil {
			return fail(err)
		}
		github, _, _ := unstructured.NestedMap(es.Object, "spec", "github")
		if len(github) != 1 {
			return fail(fmt.Errorf("%s: EventSource %s must have exactly one spec.github entry, has %d", *eventSourceFile, es.GetName(), len(github)))
		}
		var eventName string
		for name := range github {
			eventName = name
		}
		if source, err = argo.NewGitHubEventSource(es.Object, eventName, source.Secret); err != nil {
			return fail(err)
		}
		receives = func(dep map[string]any) bool {
			return dep["eventSourceName"] == es.GetName() && dep["eventName"] == eventName
		}
	}
	req, err := argo.GitHubRequest(*eventType, *delivery, payload, source.Secret)
	if err != nil {
		return fail(err)
	}
	data, err := source.Receive(req)
	var rejected *argo.RejectedDeliveryError
	if errors.As(err, &rejected) {
		fmt.Fprintf(stdout, "The EventSource rejects the delivery: HTTP %d %q. No Sensor sees it.\n", rejected.Status, rejected.Body)
		if rejected.Body == "http: request body too large" {
			fmt.Fprintf(stdout, "The body is %d bytes; raise webhook.maxPayloadSize (and the EventBus's maxPayload), see docs/argo-events.md.\n", len(payload))
		}
		return 0
	}
	if err != nil {
		return fail(err)
	}

	deps, _, _ := unstructured.NestedSlice(sensor.Object, "spec", "dependencies")
	events := map[string][]byte{}
	for _, d := range deps {
		if d, ok := d.(map[string]any); ok && receives(d) {
			if name, ok := d["name"].(string); ok {
				events[name] = data
			}
		}
	}
	if len(events) == 0 {
		fmt.Fprintln(stdout, "No dependency of the Sensor names this EventSource and event: nothing happens.")
		return 0
	}

	triggers, err := triggerNames(sensor)
	if err != nil {
		return fail(err)
	}
	if *trigger != "" {
		triggers = []string{*trigger}
	}
	for _, name := range triggers {
		report(stdout, sensor, name, events)
	}
	return 0
}

// report runs one trigger and prints the outcome.
func report(w io.Writer, sensor *unstructured.Unstructured, trigger string, events map[string][]byte) {
	objs, err := argo.RenderTriggerAll(sensor, trigger, events)
	var nt *argo.NotTriggeredError
	var dead *argo.DeadTriggerError
	switch {
	case errors.As(err, &nt):
		fmt.Fprintf(w, "trigger %s: does not fire (dependency expression %s)\n", trigger, nt.Conditions)
		deps := make([]string, 0, len(nt.Rejected))
		for d := range nt.Rejected {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			fmt.Fprintf(w, "  dependency %s dropped the event: %s\n", d, nt.Rejected[d])
			fmt.Fprintln(w, "  the Sensor logs:")
			for _, line := range nt.Logged[d] {
				fmt.Fprintf(w, "    %s\n", elideData(line))
			}
		}
	case errors.As(err, &dead):
		fmt.Fprintf(w, "trigger %s: can never fire: %v\n", trigger, dead.Err)
		if dead.Log != "" {
			fmt.Fprintf(w, "  the Sensor logs at start-up: %s\n", dead.Log)
		}
	case err != nil:
		fmt.Fprintf(w, "trigger %s: cannot be run: %v\n", trigger, err)
	default:
		for i, obj := range objs {
			fmt.Fprintf(w, "trigger %s: fires (run %d of %d) and creates:\n", trigger, i+1, len(objs))
			out, err := yaml.Marshal(obj.Object)
			if err != nil {
				fmt.Fprintf(w, "  (cannot print the object: %v)\n", err)
				continue
			}
			for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
}

// elideData shortens the whole event the Sensor logs with a drop.
func elideData(line string) string {
	start := strings.Index(line, "Data '")
	end := strings.LastIndex(line, "'] ")
	if start < 0 || end < start {
		return line
	}
	return line[:start] + "Data '…the whole event…" + line[end:]
}

func readObject(file, kind, name string) (*unstructured.Unstructured, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	docs, err := argo.ReadDocuments(file, f)
	if err != nil {
		return nil, err
	}
	var found []*unstructured.Unstructured
	for _, d := range docs {
		obj := &unstructured.Unstructured{Object: d.Object}
		if d.APIVersion() == argo.APIVersion && d.Kind() == kind && (name == "" || obj.GetName() == name) {
			found = append(found, obj)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%s holds no %s %s", file, kind, name)
	default:
		return nil, fmt.Errorf("%s holds %d objects of kind %s: choose one with -name", file, len(found), kind)
	}
}

func triggerNames(sensor *unstructured.Unstructured) ([]string, error) {
	triggers, _, err := unstructured.NestedSlice(sensor.Object, "spec", "triggers")
	if err != nil {
		return nil, fmt.Errorf("Sensor %s: spec.triggers: %w", sensor.GetName(), err)
	}
	var names []string
	for i, t := range triggers {
		name, _, _ := unstructured.NestedString(t.(map[string]any), "template", "name")
		if name == "" {
			return nil, fmt.Errorf("Sensor %s: trigger %d has no template.name", sensor.GetName(), i)
		}
		names = append(names, name)
	}
	return names, nil
}
