package controller

import (
	"context"
	"sort"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// Field indexes that keep queue decisions proportional to the work in
// flight rather than to an Agent's whole history: finished Tasks and Jobs
// stay in the cluster (and in the cache) long after they stop mattering.
const (
	// indexTaskAgent holds Tasks that have not ended, by the Agent they use
	// ("<namespace>/<agent>").
	indexTaskAgent = "kubeopencode.io/open-agent"
	// indexJobAgent holds unfinished Jobs that are not being deleted, by
	// their agent label ("<namespace>/<label value>").
	indexJobAgent = "kubeopencode.io/active-agent"
)

func taskAgentKey(t *v1alpha1.Task) string { return t.Namespace + "/" + t.AgentName() }

// readOnly reads straight from the cache's own objects. Queue decisions read
// all of an Agent's open Tasks on each admission, and copying them each time
// was most of the controller's CPU under a queue of a few hundred Tasks.
// Whoever passes it must never modify what the read returns.
var readOnly = client.UnsafeDisableDeepCopy

// admission enforces maxConcurrentTasks.
//
// The cache can lag behind the controller's own writes by a few
// milliseconds, and several Tasks of one Agent may be reconciled at once,
// so the decision is taken under a per-Agent lock, counting three things:
// Tasks the cache shows running, Jobs the cache shows unfinished (which
// survive a crash between creating a Job and recording it), and Tasks this
// process admitted whose status the cache has not caught up with. A Task
// gets a slot only if it is among the oldest waiting Tasks that fit, so the
// queue is first in, first out.
type admission struct {
	mu     sync.Mutex
	agents map[string]*agentSlots
	// left holds Tasks (types.UID) whose Job left the cache: it succeeded
	// (the cache keeps no Job that did) or was deleted. Either way it runs
	// no more, so its slot is free even before the cache could show it
	// finished. Forgotten with the Task.
	left sync.Map
}

// jobLeft records that the Task's Job left the cache.
func (a *admission) jobLeft(task types.UID) { a.left.Store(task, struct{}{}) }

func (a *admission) hasLeft(task types.UID) bool {
	_, ok := a.left.Load(task)
	return ok
}

type agentSlots struct {
	mu sync.Mutex
	// reserved holds Tasks this process admitted, with their Job's name
	// once the Job is created.
	reserved map[types.UID]string
	// ended holds Tasks whose terminal status this process has written but
	// the cache may not show yet: they hold no slot.
	ended map[types.UID]struct{}
	// running holds Tasks this process has let record Running, until they end.
	running map[types.UID]struct{}
	// blocked holds Tasks whose Job exists but which may not say Running
	// until a Task that still does has ended.
	blocked map[types.UID]types.NamespacedName
}

func newAdmission() *admission { return &admission{agents: map[string]*agentSlots{}} }

func (a *admission) slots(key string) *agentSlots {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.agents[key]
	if s == nil {
		s = &agentSlots{
			reserved: map[types.UID]string{},
			ended:    map[types.UID]struct{}{},
			running:  map[types.UID]struct{}{},
			blocked:  map[types.UID]types.NamespacedName{},
		}
		a.agents[key] = s
	}
	return s
}

// queueState is one Agent's Tasks, split by whether they hold a slot.
type queueState struct {
	holding map[types.UID]bool
	waiting []*v1alpha1.Task // in no particular order
}

// position is how many waiting Tasks queue ahead of task. Counting instead
// of sorting keeps each admission linear in the queue's length.
func (q *queueState) position(task *v1alpha1.Task) int {
	ahead := 0
	for _, t := range q.waiting {
		if t.UID != task.UID && queuedBefore(t, task) {
			ahead++
		}
	}
	return ahead
}

// waitsForSlot tells whether a Task that holds no slot is in the queue: it
// is Queued, or new and not yet looked at. A Pending Task (its Agent,
// ServiceAccount, ConfigMaps or images are missing) is not: it could not
// use a slot, so it must not keep younger Tasks from one.
func waitsForSlot(t *v1alpha1.Task) bool {
	return t.Status.JobName == "" && (t.Status.Phase == v1alpha1.TaskPhaseQueued || t.Status.Phase == "")
}

// state reads an Agent's queue from the cache.
func state(ctx context.Context, c client.Reader, agentKey, namespace, agentName string, reserved map[types.UID]string, ended map[types.UID]struct{}, left func(types.UID) bool) (*queueState, error) {
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, client.InNamespace(namespace), client.MatchingFields{indexTaskAgent: agentKey}, readOnly); err != nil {
		return nil, err
	}
	var jobs batchv1.JobList
	if err := c.List(ctx, &jobs, client.InNamespace(namespace), client.MatchingFields{indexJobAgent: namespace + "/" + jobbuilder.LabelValue(agentName)}, readOnly); err != nil {
		return nil, err
	}
	activeJob := map[types.UID]*batchv1.Job{}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		activeJob[types.UID(j.Labels[jobbuilder.LabelTaskUID])] = j
	}
	q := &queueState{holding: map[types.UID]bool{}}
	live := map[types.UID]bool{}
	for i := range tasks.Items {
		t := &tasks.Items[i]
		if activeJob[t.UID] != nil {
			q.holding[t.UID] = true
		}
		live[t.UID] = true
		if _, done := ended[t.UID]; done {
			continue
		}
		reservedJob, mine := reserved[t.UID]
		if mine || t.Status.JobName != "" || t.Status.Phase == v1alpha1.TaskPhaseRunning {
			// A Task whose Job has finished gives its slot to the next one
			// at once, while its own end is still being recorded: no more
			// Jobs than the limit are ever unfinished, and mayRun keeps the
			// Running Tasks within it too.
			jobName := t.Status.JobName
			if jobName == "" {
				jobName = reservedJob
			}
			finished, err := jobFinishedInCache(ctx, c, namespace, jobName, t.UID)
			if err != nil {
				return nil, err
			}
			finished = finished || left(t.UID)
			if !finished {
				q.holding[t.UID] = true
			}
			continue
		}
		if q.holding[t.UID] || t.DeletionTimestamp != nil || t.Annotations[v1alpha1.StopAnnotation] == "true" || !waitsForSlot(t) {
			continue
		}
		q.waiting = append(q.waiting, t)
	}
	// An unfinished Job holds its slot even after its Task is terminal
	// (a FailureTarget Job whose pod is still stopping), so there are never
	// more active Jobs than the limit. Jobs being deleted no longer count,
	// nor do Jobs whose Task is gone.
	for uid, j := range activeJob {
		if live[uid] {
			continue
		}
		owner := &v1alpha1.Task{}
		err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: j.Annotations[jobbuilder.AnnotationTaskName]}, owner, readOnly)
		if err == nil && owner.UID == uid {
			q.holding[uid] = true
		} else if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	// Reservations of Tasks that ended or vanished free their slots; ended
	// Tasks the cache no longer shows open need no remembering.
	for uid := range reserved {
		if !live[uid] {
			delete(reserved, uid)
		}
	}
	for uid := range ended {
		if !live[uid] {
			delete(ended, uid)
		}
	}
	return q, nil
}

// queuedBefore orders Tasks by creation; Tasks created in the same second
// (the API's timestamp resolution) by name, then UID, so every worker and
// every restart sees the same order.
func queuedBefore(a, b *v1alpha1.Task) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.UID < b.UID
}

// admit decides whether task may start now. On true the slot is reserved
// until release is called or the Task ends; position is the Task's place in
// the queue otherwise.
func (a *admission) admit(ctx context.Context, c client.Reader, task *v1alpha1.Task, limit int32) (ok bool, position int, err error) {
	if limit <= 0 {
		return true, 0, nil
	}
	key := taskAgentKey(task)
	s := a.slots(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, mine := s.reserved[task.UID]; mine {
		return true, 0, nil
	}
	q, err := state(ctx, c, key, task.Namespace, task.AgentName(), s.reserved, s.ended, a.hasLeft)
	if err != nil {
		return false, 0, err
	}
	if q.holding[task.UID] {
		return true, 0, nil
	}
	free := int(limit) - len(q.holding)
	pos := q.position(task)
	if pos < free {
		s.reserved[task.UID] = ""
		return true, 0, nil
	}
	return false, pos - max(free, 0) + 1, nil
}

// jobCreated records the name of an admitted Task's Job, so that its slot
// frees as soon as the Job finishes even if the cache has not yet seen the
// Task's status naming it.
func (a *admission) jobCreated(task *v1alpha1.Task, job string) {
	s := a.slots(taskAgentKey(task))
	s.mu.Lock()
	if _, ok := s.reserved[task.UID]; ok {
		s.reserved[task.UID] = job
	}
	s.mu.Unlock()
}

// mayRun decides whether a Task whose Job exists may now be recorded
// Running. A Task whose Job has finished still says Running until its end is
// written, and it counts here until then: a freed slot goes to the next
// Task's Job at once, but no more Tasks than the limit ever say Running.
// A Task that may not yet is remembered and woken by markEnded.
func (a *admission) mayRun(ctx context.Context, c client.Reader, task *v1alpha1.Task, limit int32) (bool, error) {
	if limit <= 0 {
		return true, nil
	}
	s := a.slots(taskAgentKey(task))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[task.UID]; ok {
		return true, nil
	}
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, client.InNamespace(task.Namespace), client.MatchingFields{indexTaskAgent: taskAgentKey(task)}, readOnly); err != nil {
		return false, err
	}
	live := make(map[types.UID]bool, len(tasks.Items))
	running := 0
	for i := range tasks.Items {
		t := &tasks.Items[i]
		live[t.UID] = true
		_, done := s.ended[t.UID]
		_, counted := s.running[t.UID]
		if t.UID != task.UID && !done && !counted && t.Status.Phase == v1alpha1.TaskPhaseRunning {
			running++
		}
	}
	for uid := range s.running {
		if !live[uid] {
			delete(s.running, uid)
		}
	}
	if running+len(s.running) < int(limit) {
		s.running[task.UID] = struct{}{}
		delete(s.blocked, task.UID)
		return true, nil
	}
	s.blocked[task.UID] = types.NamespacedName{Namespace: task.Namespace, Name: task.Name}
	return false, nil
}

// release forgets a Task (it ended, was deleted, or its Job could not be
// created): its reservation and its place among the running go.
func (a *admission) release(task *v1alpha1.Task) {
	a.left.Delete(task.UID)
	s := a.slots(taskAgentKey(task))
	s.mu.Lock()
	delete(s.reserved, task.UID)
	delete(s.running, task.UID)
	delete(s.blocked, task.UID)
	s.mu.Unlock()
}

// markEnded records that the Task's terminal status is written, and returns
// the Tasks that were waiting for a Running Task to end.
func (a *admission) markEnded(task *v1alpha1.Task) []types.NamespacedName {
	s := a.slots(taskAgentKey(task))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended[task.UID] = struct{}{}
	delete(s.running, task.UID)
	woken := make([]types.NamespacedName, 0, len(s.blocked))
	for uid, nn := range s.blocked {
		woken = append(woken, nn)
		delete(s.blocked, uid)
	}
	return woken
}

// jobFinishedInCache tells whether the cache shows the Task's Job finished.
// A Job the cache does not show (not created yet, not seen yet, or one that
// succeeded, which the cache leaves out) is not: its Task holds its slot
// until its end is recorded.
func jobFinishedInCache(ctx context.Context, c client.Reader, namespace, name string, task types.UID) (bool, error) {
	if name == "" {
		return false, nil
	}
	job := &batchv1.Job{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, job, readOnly)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return job.Labels[jobbuilder.LabelTaskUID] == string(task) && jobFinished(job), nil
}

// nextInQueue returns the oldest Tasks of an Agent that still wait for a
// slot, at most n. Tasks this process has admitted already are not among
// them: a freed slot must wake a Task that can take it.
func (a *admission) nextInQueue(ctx context.Context, c client.Reader, namespace, agentName string, n int) []types.NamespacedName {
	if n <= 0 {
		return nil
	}
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, client.InNamespace(namespace), client.MatchingFields{indexTaskAgent: namespace + "/" + agentName}, readOnly); err != nil {
		return nil
	}
	s := a.slots(namespace + "/" + agentName)
	s.mu.Lock()
	var waiting []*v1alpha1.Task
	for i := range tasks.Items {
		t := &tasks.Items[i]
		_, admitted := s.reserved[t.UID]
		_, done := s.ended[t.UID]
		if !admitted && !done && waitsForSlot(t) {
			waiting = append(waiting, t)
		}
	}
	s.mu.Unlock()
	sort.SliceStable(waiting, func(i, j int) bool { return queuedBefore(waiting[i], waiting[j]) })
	if len(waiting) > n {
		waiting = waiting[:n]
	}
	out := make([]types.NamespacedName, 0, len(waiting))
	for _, t := range waiting {
		out = append(out, types.NamespacedName{Namespace: t.Namespace, Name: t.Name})
	}
	return out
}

func jobFinished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if c.Status == "True" && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return true
		}
	}
	return false
}
