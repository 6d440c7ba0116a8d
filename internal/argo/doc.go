// Package argo checks the project's Argo Events manifests and reproduces, in
// process, what Argo Events v1.9.11 does with a GitHub webhook delivery: the
// GitHub EventSource's request handling, then the Sensor's filters, trigger
// conditions and k8s trigger, up to the object the trigger creates.
//
// The Argo Events Go module is not importable here, so the package is
// written from Argo's source at v1.9.11 and its published JSON schema, and
// uses the libraries that release uses for the same steps, at the same
// versions where it matters: github.com/antonmedv/expr v1.15.5 to translate
// trigger conditions and github.com/Knetic/govaluate (the 2017 commit Argo
// pins) to parse and evaluate them and to run expression filters; gjson for
// dataKey and filter paths, sjson for dest, sprig for templates (gjson and
// sjson are at newer patch releases than Argo's).
//
// What it follows:
//   - GitHubEventSource.Receive: the body limit (webhook.maxPayloadSize,
//     1 MiB by default; a larger body is answered with HTTP 400 "http:
//     request body too large"), the signature check, the event data with
//     every request header under "headers" and the body re-encoded under
//     "body" with the X-GitHub-Event and X-GitHub-Delivery copies.
//     GitHubRequest builds a delivery with every header GitHub sends.
//   - Sensors are decoded as the Argo controller reads them: field names
//     match only in their exact case and unknown fields are dropped, so a
//     misspelled field (datakey) is absent, not an error.
//   - Conditions: ParseConditions translates them with expr and parses the
//     result with govaluate as the Sensor does, failing where it fails
//     (DeadTriggerError, with the line the Sensor logs); evaluation follows
//     the JetStream EventBus: without "&" each passing dependency fires the
//     trigger on its own, with "&" the expression is evaluated once.
//   - Data, expression and context filters with their logical operators and
//     Argo's error handling; a drop carries both the emulator's reason (which
//     filter and why) and the lines the Sensor logs, which never name the
//     filter (NotTriggeredError).
//   - Trigger parameters (dataKey, dataTemplate, contextKey, value,
//     useRawData, operation) and the standard k8s trigger's create with its
//     labels.
//
// What it does not emulate: time and script filters, transforms, triggers
// other than k8s create, resource sources other than resource and inline,
// form-encoded GitHub deliveries, the GitHub EventSource's hook management
// and metadata, the STAN and Kafka EventBuses, the EventBus's own payload
// limit (JetStream maxPayload, 1MB by default), events saved between
// deliveries (RenderTrigger takes the events that arrive together), rate
// limits, retries and dead-letter triggers. RenderTrigger gives each event
// an empty type; pass full contexts to RenderTriggerEvents where a Sensor
// reads them.
package argo
