package controller

import (
	"context"
	"fmt"

	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Default rate limits of event writes, the kubelet's defaults
// (--event-qps, --event-burst).
const (
	DefaultEventQPS   = 50
	DefaultEventBurst = 100
)

// newEventRecorder records events through a client of their own, limited to
// qps writes a second with bursts of burst. Events tell users what happened;
// they must not compete with the work itself: in a burst of Tasks, status
// and Job writes go first and the events follow a little later (the
// kubelet limits its events the same way). Recording stops with ctx.
func newEventRecorder(ctx context.Context, cfg *rest.Config, qps float32, burst int) (recorder.EventRecorder, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst, c.RateLimiter = qps, burst, nil
	if c.QPS <= 0 {
		c.QPS = DefaultEventQPS
	}
	if c.Burst <= 0 {
		c.Burst = DefaultEventBurst
	}
	cs, err := eventsv1client.NewForConfig(c)
	if err != nil {
		return nil, err
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs})
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	rec, ok := b.NewRecorder(Scheme(), "kubeopencode-controller").(recorder.EventRecorder)
	if !ok {
		return nil, fmt.Errorf("client-go's event recorder does not record annotated events")
	}
	return rec, nil
}
