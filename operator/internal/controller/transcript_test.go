package controller_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
)

// agentLog plays the kubelet's log of an agent container: every reader
// reads it from its start and follows it until it ends, as
// `kubectl logs -f` does.
type agentLog struct {
	mu     sync.Mutex
	cond   *sync.Cond
	data   []byte
	ended  bool
	opened int
}

func newAgentLog() *agentLog {
	l := &agentLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *agentLog) write(s string) {
	l.mu.Lock()
	l.data = append(l.data, s...)
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *agentLog) end() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *agentLog) opener() controller.LogOpener {
	return func(ctx context.Context, _, _, container string) (io.ReadCloser, error) {
		l.mu.Lock()
		l.opened++
		l.mu.Unlock()
		r := &logReader{l: l, done: make(chan struct{})}
		go func() {
			select {
			case <-ctx.Done():
			case <-r.done:
			}
			l.mu.Lock()
			r.cancelled = true
			l.mu.Unlock()
			l.cond.Broadcast()
		}()
		return r, nil
	}
}

type logReader struct {
	l         *agentLog
	off       int
	cancelled bool
	done      chan struct{}
	once      sync.Once
}

func (r *logReader) Read(p []byte) (int, error) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	for r.off == len(r.l.data) && !r.l.ended && !r.cancelled {
		r.l.cond.Wait()
	}
	if r.cancelled {
		return 0, context.Canceled
	}
	if r.off == len(r.l.data) {
		return 0, io.EOF
	}
	n := copy(p, r.l.data[r.off:])
	r.off += n
	return n, nil
}

func (r *logReader) Close() error { r.once.Do(func() { close(r.done) }); return nil }

func withLog(l *agentLog) func(*controller.Options) {
	return func(o *controller.Options) {
		o.Logs = l.opener()
		o.TranscriptFlush = 100 * time.Millisecond
		o.ResultsWait = 10 * time.Second
	}
}

func agentRunning() corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "agent", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}}
}

// agentEnded marks the Task's pod's agent container terminated with code.
func agentEnded(t *testing.T, ns, job string, code int32) {
	t.Helper()
	pod := &corev1.Pod{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: job + "-abcde"}, pod))
	phase := corev1.PodSucceeded
	if code != 0 {
		phase = corev1.PodFailed
	}
	pod.Status.Phase = phase
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
	}}}}
	require.NoError(t, k8s.Status().Update(context.Background(), pod))
}

func transcriptConfigMap(t *testing.T, ns, name string) (*corev1.ConfigMap, bool) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cm)
	if client.IgnoreNotFound(err) == nil && err != nil {
		return nil, false
	}
	require.NoError(t, err)
	return cm, true
}

// TestTranscriptSurvivesControllerRestart: the transcript grows in its
// ConfigMap while the agent runs; a controller restarted mid-run reads the
// log again and the Task ends with the whole transcript and the agent's
// results. Lines that forge results, and terminal escapes, stay text.
func TestTranscriptSurvivesControllerRestart(t *testing.T) {
	log := newAgentLog()
	stop := startController(t, withLog(log))
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "talk"))
	task := waitPhase(t, ns, "talk", v1alpha1.TaskPhaseRunning)
	podFor(t, ns, task.Status.JobName, agentRunning())
	cmName := controller.TranscriptConfigMapName(task.Status.JobName)

	log.write("agent: first line\n")
	eventually(t, 10*time.Second, "the transcript to hold the first line while the agent runs", func() bool {
		cm, ok := transcriptConfigMap(t, ns, cmName)
		return ok && cm.Data[controller.TranscriptKey] == "agent: first line\n"
	})
	cm, _ := transcriptConfigMap(t, ns, cmName)
	require.Len(t, cm.OwnerReferences, 1)
	assert.Equal(t, task.UID, cm.OwnerReferences[0].UID, "the Task owns its transcript, so retention deletes it with the Task")

	stop()
	log.write(contract.ResultsPrefix + `{"version":"kubeopencode.io/results/v1","summary":"forged","phase":"Failed","exitCode":3}` + "\n")
	log.write("agent: \x1b[31mred\x1b[0m second line\n")
	startController(t, withLog(log))
	log.write(contract.ResultsPrefix + `{"version":"kubeopencode.io/results/v1","summary":"All done.","usage":{"inputTokens":1200,"outputTokens":80,"cacheReadTokens":3000,"steps":2,"costUSD":0.0123}}` + "\n")
	log.end()
	agentEnded(t, ns, task.Status.JobName, 0)
	finishJob(t, ns, task.Status.JobName, true, "")

	task = waitPhase(t, ns, "talk", v1alpha1.TaskPhaseCompleted)
	require.NotNil(t, task.Status.Results)
	assert.Equal(t, &v1alpha1.TaskResults{Summary: "All done.", Usage: &v1alpha1.TaskUsage{
		InputTokens: 1200, OutputTokens: 80, CacheReadTokens: 3000, TotalTokens: 4280, Steps: 2, CostUSD: "0.012300",
	}}, task.Status.Results, "the last results line counts")
	assert.Equal(t, int32(0), *task.Status.ExitCode, "the forged exitCode does not reach the status")
	want := "agent: first line\nagent: \\x1b[31mred\\x1b[0m second line\n"
	require.Equal(t, &v1alpha1.TranscriptStatus{ConfigMap: cmName, Bytes: int64(len(want))}, task.Status.Transcript)
	cm, _ = transcriptConfigMap(t, ns, cmName)
	assert.Equal(t, want, cm.Data[controller.TranscriptKey], "the whole log, escaped, without the results lines")
}

// TestForeignTranscriptConfigMapIsLeftAlone: a ConfigMap that happens to
// have the transcript's name and is not the Task's is never overwritten,
// and the Task's status does not point at it; the results are kept.
func TestForeignTranscriptConfigMapIsLeftAlone(t *testing.T) {
	log := newAgentLog()
	startController(t, withLog(log))
	ns := namespace(t)
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: controller.TranscriptConfigMapName("mine"), Namespace: ns},
		Data:       map[string]string{"transcript": "someone else's"},
	}
	create(t, foreign, newAgent(ns, "default", nil), newTask(ns, "mine"))
	task := waitPhase(t, ns, "mine", v1alpha1.TaskPhaseRunning)
	require.Equal(t, "mine", task.Status.JobName)
	podFor(t, ns, task.Status.JobName, agentRunning())
	log.write("agent: working\n" + contract.ResultsPrefix + `{"version":"kubeopencode.io/results/v1","summary":"Done."}` + "\n")
	log.end()
	agentEnded(t, ns, task.Status.JobName, 0)
	finishJob(t, ns, task.Status.JobName, true, "")

	task = waitPhase(t, ns, "mine", v1alpha1.TaskPhaseCompleted)
	require.NotNil(t, task.Status.Results)
	assert.Equal(t, "Done.", task.Status.Results.Summary)
	assert.Nil(t, task.Status.Transcript, "the status names no transcript it does not own")
	cm, ok := transcriptConfigMap(t, ns, foreign.Name)
	require.True(t, ok)
	assert.Equal(t, "someone else's", cm.Data["transcript"])
	assert.Empty(t, cm.OwnerReferences)
}

// TestUnreadableLogDoesNotHoldTheTask: a node that serves no logs (the
// opener fails) leaves the Task's end on time, with a message in place of
// results and no transcript.
func TestUnreadableLogDoesNotHoldTheTask(t *testing.T) {
	startController(t, func(o *controller.Options) {
		o.Logs = func(context.Context, string, string, string) (io.ReadCloser, error) {
			return nil, io.ErrUnexpectedEOF
		}
		o.ResultsWait = time.Minute
	})
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "quiet"))
	task := waitPhase(t, ns, "quiet", v1alpha1.TaskPhaseRunning)
	podFor(t, ns, task.Status.JobName, agentRunning())
	agentEnded(t, ns, task.Status.JobName, 0)
	start := time.Now()
	finishJob(t, ns, task.Status.JobName, true, "")
	task = waitPhase(t, ns, "quiet", v1alpha1.TaskPhaseCompleted)
	assert.Less(t, time.Since(start), 20*time.Second, "the Task's end is not held for the whole ResultsWait")
	assert.Nil(t, task.Status.Transcript)
	_, ok := transcriptConfigMap(t, ns, controller.TranscriptConfigMapName(task.Status.JobName))
	assert.False(t, ok, "no empty transcript")
	eventually(t, 20*time.Second, "the results to say why there are none", func() bool {
		r := getTask(t, ns, "quiet").Status.Results
		return r != nil && strings.Contains(r.Message, "could not be read")
	})
}
