package controller

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// The transcript and the results of a Task come from the agent container's
// log, which the controller follows while the Task runs (pods/log, read
// only) and copies into a Task-owned ConfigMap, so that both outlive the
// pod. The container's termination message could not carry them: the
// kubelet keeps at most 4 KiB of it, less when a pod has many containers.
//
// Memory: a recording holds at most MaxTranscriptBytes of a running Task's
// output, and is dropped once the Task's end is recorded.

const (
	// MaxTranscriptBytes is the most of an agent's output a transcript
	// keeps: a ConfigMap holds at most 1 MiB, and some room is left for the
	// marker of what was left out.
	MaxTranscriptBytes = 1<<20 - 4<<10
	// transcriptHead is how much of the beginning a truncated transcript
	// keeps; the rest of the room goes to the end, where the final answer is.
	transcriptHead = 256 << 10
	// maxTranscriptLine is the longest line kept whole; longer ones are cut.
	maxTranscriptLine = contract.MaxResultsLine
	// TranscriptKey is the ConfigMap key that holds the transcript.
	TranscriptKey = "transcript"
	// LabelTranscript marks transcript ConfigMaps.
	LabelTranscript = "kubeopencode.io/transcript"
	// DefaultTranscriptFlush is how often a running Task's transcript is
	// written while it grows.
	DefaultTranscriptFlush = 10 * time.Second
	// DefaultResultsWait is how long a Task whose Job ended waits for the
	// agent's log to be read to its end before its end is recorded; results
	// that come later are written then.
	DefaultResultsWait = 30 * time.Second
	// logOpenTimeout bounds the wait for a log to start streaming: a node
	// that does not serve logs must not hold a Task's end for long.
	logOpenTimeout = 10 * time.Second
)

// TranscriptConfigMapName is the name of a Task's transcript ConfigMap.
func TranscriptConfigMapName(jobName string) string { return jobName + "-transcript" }

// LogOpener opens the log of a container, following it until it ends.
type LogOpener func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)

// ClientsetLogOpener reads logs with client-go.
func ClientsetLogOpener(cs kubernetes.Interface) LogOpener {
	return func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
		return cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	}
}

// transcripts follows the agent containers of running Tasks.
type transcripts struct {
	open    LogOpener
	client  client.Client
	reader  client.Reader
	flush   time.Duration
	onEnd   func(task types.NamespacedName)
	mu      sync.Mutex
	running map[types.UID]*recording
	ctx     context.Context
}

// recording is the transcript and results of one Task's agent container.
type recording struct {
	task   types.NamespacedName
	uid    types.UID
	owner  metav1.OwnerReference
	pod    string
	cmName string
	done   chan struct{}
	// mountPaths are where the pod's git-init containers put the Git
	// contexts (the pod spec the controller built): the only mount paths
	// results are kept for.
	mountPaths []string

	mu sync.Mutex
	// stopped: the Task's end was recorded before its log ended; when it
	// ends the recording writes what it has to the Task's status itself.
	stopped bool
	// finished: the log has been read to its end; results are final.
	finished bool
	// opened: the log could be opened at least once (there is a transcript
	// to keep); openFailed: the first attempt to open it failed, so the
	// Task's end is not held for it.
	opened, openFailed bool
	// foreign: a ConfigMap of the transcript's name belongs to something
	// else; the transcript is not kept.
	foreign bool
	buf     transcriptBuffer
	results *contract.AgentResults
	// problem says why there are no results (set when done).
	problem string
	// readErr is why the log could not be read to its end.
	readErr error
}

func newTranscripts(ctx context.Context, open LogOpener, c client.Client, reader client.Reader, flush time.Duration, onEnd func(types.NamespacedName)) *transcripts {
	if flush <= 0 {
		flush = DefaultTranscriptFlush
	}
	return &transcripts{open: open, client: c, reader: reader, flush: flush, onEnd: onEnd, running: map[types.UID]*recording{}, ctx: ctx}
}

// agentStarted says whether the pod's agent container has started (its log
// can be read).
func agentStarted(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == jobbuilder.AgentContainer {
			return s.State.Running != nil || s.State.Terminated != nil
		}
	}
	return false
}

// ensure starts following the agent container of pod, unless the Task's
// log is followed already.
func (t *transcripts) ensure(task *v1alpha1.Task, pod *corev1.Pod) *recording {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rec, ok := t.running[task.UID]; ok {
		return rec
	}
	rec := &recording{
		task:   types.NamespacedName{Namespace: task.Namespace, Name: task.Name},
		uid:    task.UID,
		owner:  *metav1.NewControllerRef(task, v1alpha1.GroupVersion.WithKind("Task")),
		pod:    pod.Name,
		cmName: TranscriptConfigMapName(task.Status.JobName),
		done:   make(chan struct{}),
	}
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if e.Name == jobbuilder.EnvMountPath {
				rec.mountPaths = append(rec.mountPaths, e.Value)
			}
		}
	}
	t.running[task.UID] = rec
	go t.follow(rec)
	return rec
}

// get returns the recording of a Task, or nil.
func (t *transcripts) get(uid types.UID) *recording {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running[uid]
}

// forget drops a Task's recording (its end is recorded, or it is gone).
func (t *transcripts) forget(uid types.UID) {
	t.mu.Lock()
	delete(t.running, uid)
	t.mu.Unlock()
}

// markStopped makes the recording of a Task whose end is being recorded
// write its results to the Task's status when the log ends. It returns
// false when there is no recording, or when the log has ended already and
// the results are final.
func (t *transcripts) markStopped(uid types.UID) bool {
	rec := t.get(uid)
	if rec == nil {
		return false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.finished {
		return false
	}
	rec.stopped = true
	return true
}

func (rec *recording) isDone() bool {
	select {
	case <-rec.done:
		return true
	default:
		return false
	}
}

// follow reads the agent container's log to its end, writing the
// transcript as it grows and once more at the end.
func (t *transcripts) follow(rec *recording) {
	ctx := t.ctx
	logger := log.FromContext(ctx).WithValues("task", rec.task.String(), "pod", rec.pod)
	stopFlush := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		tick := time.NewTicker(t.flush)
		defer tick.Stop()
		var last int64 = -1
		for {
			select {
			case <-stopFlush:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if n, opened := rec.seen(); opened && n != last {
					if err := t.write(ctx, rec); err != nil {
						logger.Error(err, "writing the transcript")
					} else {
						last = n
					}
				}
			}
		}
	}()
	err := t.read(ctx, rec)
	close(stopFlush)
	<-flushed
	rec.mu.Lock()
	rec.readErr = err
	switch {
	case rec.results != nil:
	case err != nil:
		rec.problem = bounded(fmt.Sprintf("The agent's log could not be read to its end (%v): no results.", err), 1024)
	case rec.problem == "":
		rec.problem = "The agent printed no results line (" + strings.TrimSpace(contract.ResultsPrefix) + " …, see docs/results.md): no summary, usage or Git facts."
	}
	rec.finished = true
	stopped := rec.stopped
	opened := rec.opened
	rec.mu.Unlock()
	if opened {
		if err := t.write(ctx, rec); err != nil {
			logger.Error(err, "writing the transcript")
		}
	}
	close(rec.done)
	if stopped {
		if err := t.recordStopped(ctx, rec); err != nil {
			logger.Error(err, "recording a stopped Task's results")
		}
		t.forget(rec.uid)
		return
	}
	if t.onEnd != nil {
		t.onEnd(rec.task)
	}
}

// read follows the log. A log that breaks off while the container still
// runs (an API server or kubelet restart) is read again from its start.
func (t *transcripts) read(ctx context.Context, rec *recording) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		var rc io.ReadCloser
		rc, err = t.openLog(ctx, rec)
		if err != nil {
			rec.mu.Lock()
			if !rec.opened {
				rec.openFailed = true
			}
			rec.mu.Unlock()
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("pod %s is gone", rec.pod)
			}
			continue
		}
		rec.reset()
		rec.mu.Lock()
		rec.opened = true
		rec.mu.Unlock()
		err = rec.consume(rc)
		rc.Close()
		if err == nil {
			return nil
		}
	}
	return err
}

// openLog opens the agent container's log, giving up after logOpenTimeout
// when it does not start streaming.
func (t *transcripts) openLog(ctx context.Context, rec *recording) (io.ReadCloser, error) {
	octx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(logOpenTimeout, cancel)
	rc, err := t.open(octx, rec.task.Namespace, rec.pod, jobbuilder.AgentContainer)
	if !timer.Stop() {
		if err == nil {
			rc.Close()
		}
		cancel()
		return nil, fmt.Errorf("the log of pod %s did not start streaming within %s", rec.pod, logOpenTimeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// waitable says whether the Task's end is worth holding for this log: it
// is being read, or its first opening is still under way.
func (rec *recording) waitable() bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.opened || !rec.openFailed
}

func (rec *recording) reset() {
	rec.mu.Lock()
	rec.buf = transcriptBuffer{}
	rec.results = nil
	rec.problem = ""
	rec.mu.Unlock()
}

// seen is how much of the log was read, and whether it could be opened.
func (rec *recording) seen() (int64, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.buf.total, rec.opened
}

// consume reads log lines until the log ends. The last line that starts
// with the results prefix holds the results; every other line goes to the
// transcript.
func (rec *recording) consume(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br, maxTranscriptLine)
		if line != nil {
			rec.line(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLine reads one line (without its newline), keeping at most max bytes
// of it and noting how much was cut; the rest of a longer line is skipped.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	cut := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(out) < max {
			keep := min(len(frag), max+1-len(out)) // one byte more tells a long line
			out = append(out, frag[:keep]...)
			cut += len(frag) - keep
		} else {
			cut += len(frag)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(out) == 0 && err != nil {
			return nil, err
		}
		out = []byte(strings.TrimSuffix(string(out), "\n"))
		if len(out) > max {
			cut += len(out) - max
			out = out[:max]
		}
		if cut > 0 {
			out = append(out, fmt.Sprintf(" … [line cut: %d more bytes]", cut)...)
		}
		return out, err
	}
}

func (rec *recording) line(raw []byte) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := string(raw)
	if strings.HasPrefix(s, contract.ResultsPrefix) {
		r, _, err := contract.ParseResultsLine(s)
		if err != nil {
			rec.results = nil
			rec.problem = bounded("The agent's results line could not be read: "+sanitizeText(err.Error(), false)+".", 1024)
			rec.buf.add(fmt.Sprintf("[kubeopencode: a results line of %d bytes could not be read]", len(s)))
			return
		}
		rec.results, rec.problem = r, ""
		return
	}
	rec.buf.add(sanitizeText(s, false))
}

// write stores the transcript in the Task-owned ConfigMap.
func (t *transcripts) write(ctx context.Context, rec *recording) error {
	rec.mu.Lock()
	text := rec.buf.String()
	rec.mu.Unlock()
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: rec.task.Namespace, Name: rec.cmName}
	err := t.reader.Get(ctx, key, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: rec.cmName, Namespace: rec.task.Namespace,
				Labels: map[string]string{
					jobbuilder.LabelTaskUID:   string(rec.uid),
					jobbuilder.LabelTask:      jobbuilder.LabelValue(rec.task.Name),
					jobbuilder.LabelManagedBy: jobbuilder.ManagedByValue,
					LabelTranscript:           "true",
				},
				Annotations:     map[string]string{jobbuilder.AnnotationTaskName: rec.task.Name},
				OwnerReferences: []metav1.OwnerReference{rec.owner},
			},
			Data: map[string]string{TranscriptKey: text},
		}
		return t.client.Create(ctx, cm)
	case err != nil:
		return err
	}
	if !ownedBy(cm, rec.uid) {
		rec.mu.Lock()
		already := rec.foreign
		rec.foreign = true
		rec.mu.Unlock()
		if already {
			return nil
		}
		return fmt.Errorf("ConfigMap %s exists and does not belong to Task %s: the transcript is not kept", rec.cmName, rec.task)
	}
	if cm.Data[TranscriptKey] == text {
		return nil
	}
	cm.Data = map[string]string{TranscriptKey: text}
	return t.client.Update(ctx, cm)
}

func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, o := range obj.GetOwnerReferences() {
		if o.UID == uid {
			return true
		}
	}
	return false
}

// transcriptStatus describes the recording for the Task's status; nil
// when the log could never be read (there is no transcript ConfigMap).
func (rec *recording) transcriptStatus() *v1alpha1.TranscriptStatus {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !rec.opened || rec.foreign {
		return nil
	}
	return &v1alpha1.TranscriptStatus{ConfigMap: rec.cmName, Bytes: rec.buf.total, Truncated: rec.buf.truncated()}
}

// taskResults turns what the agent reported into the Task's results.
// repos are the Git contexts git-init checked out: results for any other
// mount path are dropped.
func (rec *recording) taskResults(repos []v1alpha1.RepositoryStatus) *v1alpha1.TaskResults {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.results == nil {
		return &v1alpha1.TaskResults{Message: rec.problem}
	}
	// The pod's Git contexts, and the checkouts git-init reported (the
	// same, once the Task's status records them; a stopped Task's do not).
	known := append([]v1alpha1.RepositoryStatus(nil), repos...)
	for _, p := range rec.mountPaths {
		known = append(known, v1alpha1.RepositoryStatus{MountPath: p})
	}
	return sanitizeResults(rec.results, known)
}

// recordStopped writes a stopped Task's results and transcript to its
// status, once its agent's log has ended.
func (t *transcripts) recordStopped(ctx context.Context, rec *recording) error {
	// From the API server: the cache keeps little of a finished Task.
	task := &v1alpha1.Task{}
	if err := t.reader.Get(ctx, rec.task, task); err != nil {
		return client.IgnoreNotFound(err)
	}
	if task.UID != rec.uid {
		return nil
	}
	patch := client.MergeFrom(task.DeepCopy())
	task.Status.Transcript = rec.transcriptStatus()
	task.Status.Results = rec.taskResults(task.Status.Repositories)
	return t.client.Status().Patch(ctx, task, patch)
}

// transcriptBuffer keeps the beginning of a log and, once it is too long,
// its end: the lines in between are counted and left out.
type transcriptBuffer struct {
	head     strings.Builder
	tail     []string
	tailLen  int
	dropped  int64
	total    int64
	headFull bool
}

func (b *transcriptBuffer) add(line string) {
	n := len(line) + 1
	b.total += int64(n)
	if !b.headFull && b.head.Len()+n <= transcriptHead {
		b.head.WriteString(line)
		b.head.WriteByte('\n')
		return
	}
	b.headFull = true
	b.tail = append(b.tail, line)
	b.tailLen += n
	room := MaxTranscriptBytes - b.head.Len() - 128
	for b.tailLen > room && len(b.tail) > 0 {
		b.dropped += int64(len(b.tail[0]) + 1)
		b.tailLen -= len(b.tail[0]) + 1
		b.tail[0] = ""
		b.tail = b.tail[1:]
	}
	if cap(b.tail) > 4*len(b.tail)+1024 {
		b.tail = append([]string(nil), b.tail...)
	}
}

func (b *transcriptBuffer) truncated() bool { return b.dropped > 0 }

func (b *transcriptBuffer) String() string {
	var s strings.Builder
	s.Grow(b.head.Len() + b.tailLen + 128)
	s.WriteString(b.head.String())
	if b.dropped > 0 {
		fmt.Fprintf(&s, "… [kubeopencode: %d bytes of the agent's output left out here; the transcript keeps the first %d and the last %d bytes] …\n", b.dropped, b.head.Len(), b.tailLen)
	}
	for _, l := range b.tail {
		s.WriteString(l)
		s.WriteByte('\n')
	}
	return s.String()
}

// sanitizeText makes agent output safe to store and show: invalid UTF-8
// becomes U+FFFD, and control characters (other than tab, and newline when
// multiline) are written out as \xNN, so that the text cannot drive the
// terminal of whoever reads it.
func sanitizeText(s string, multiline bool) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	clean := true
	for _, r := range s {
		if isControl(r, multiline) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r, multiline) {
			fmt.Fprintf(&b, `\x%02x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune, multiline bool) bool {
	switch {
	case r == '\t':
		return false
	case r == '\n':
		return !multiline
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	}
	return false
}

// bounded cuts s to at most max bytes at a character boundary.
func bounded(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
