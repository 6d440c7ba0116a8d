package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	eventsv1 "k8s.io/api/events/v1"
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
	// eventMaxDelay is how long an event may wait for its turn; one that
	// would wait longer is dropped (and counted).
	eventMaxDelay = time.Minute
)

var eventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "kubeopencode_events_dropped_total",
	Help: "Events not written because more were due than --event-qps and --event-burst allow within a minute, or because the controller stopped.",
})

// newEventRecorder records events at most qps a second with bursts of burst.
// Events tell users what happened; they must not compete with the work
// itself: in a burst of Tasks the status and Job writes go first and the
// events follow a little later, as the kubelet limits its own events.
// Recording stops with ctx; events still waiting for their turn then are
// dropped.
func newEventRecorder(ctx context.Context, cfg *rest.Config, qps float32, burst int) (recorder.EventRecorder, error) {
	if qps <= 0 {
		qps = DefaultEventQPS
	}
	if burst <= 0 {
		burst = DefaultEventBurst
	}
	cs, err := eventsv1client.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, err
	}
	sink := &throttledSink{sink: &events.EventSinkImpl{Interface: cs}, limiter: rate.NewLimiter(rate.Limit(qps), burst)}
	b := events.NewBroadcaster(sink)
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

// throttledSink waits for its rate limiter before each write. The limit is
// kept here rather than in the client so that waiting is not logged as
// client-side throttling, and so that an event that cannot have its turn in
// time is dropped quietly: client-go's recorder takes a write that returns
// no error as done.
type throttledSink struct {
	sink    events.EventSink
	limiter *rate.Limiter
}

func (s *throttledSink) turn(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, eventMaxDelay)
	defer cancel()
	if err := s.limiter.Wait(ctx); err != nil {
		eventsDropped.Inc()
		return false
	}
	return true
}

func (s *throttledSink) Create(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	if !s.turn(ctx) {
		return e, nil
	}
	return s.sink.Create(ctx, e)
}

func (s *throttledSink) Update(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	if !s.turn(ctx) {
		return e, nil
	}
	return s.sink.Update(ctx, e)
}

func (s *throttledSink) Patch(ctx context.Context, old *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	if !s.turn(ctx) {
		return old, nil
	}
	return s.sink.Patch(ctx, old, data)
}
