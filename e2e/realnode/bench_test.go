package realnode_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

// BenchmarkTaskCompletes measures a Task from creation to Completed on the
// real node: admission, the Job, pulling nothing new (the images are already
// on the node), context-init writing task.md and a Text context, and the
// echo agent reading them.
//
//	go test ./e2e/realnode -run '^$' -bench TaskCompletes -benchtime 5x
func BenchmarkTaskCompletes(b *testing.B) {
	if env.skip != "" {
		b.Skip(env.skip)
	}
	ctx := b.Context()
	ns := restrictedNamespace(b)
	if err := env.k8s.Create(ctx, echoAgent(ns, "default", "cat=task.md", "cat=notes.md")); err != nil {
		b.Fatal(err)
	}
	// A first Task pulls the echo image onto the node, outside the timing.
	run := func(name string) error {
		if err := env.k8s.Create(ctx, task(ns, name, "", "Benchmark.",
			v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "notes.md", Text: text("notes\n")})); err != nil {
			return err
		}
		return deploy.Poll(ctx, 2*time.Minute, func() (bool, error) {
			tk := &v1alpha1.Task{}
			if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tk); err != nil {
				return false, err
			}
			if tk.Status.Phase == v1alpha1.TaskPhaseFailed {
				return false, fmt.Errorf("Task %s failed: %s", name, describeTask(tk))
			}
			return tk.Status.Phase == v1alpha1.TaskPhaseCompleted, nil
		})
	}
	if err := run("warm-up"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := run(fmt.Sprintf("t%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}
