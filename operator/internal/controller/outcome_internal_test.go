package controller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// TestRepositoriesRecordLeftOutSubmodules: the submodules git-init left
// out reach the Task's status next to the commit.
func TestRepositoriesRecordLeftOutSubmodules(t *testing.T) {
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{InitContainers: []corev1.Container{{
			Name: jobbuilder.GitInitPrefix + "0",
			Env:  []corev1.EnvVar{{Name: jobbuilder.EnvMountPath, Value: "/workspace/src"}},
		}}},
		Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{
			Name: jobbuilder.GitInitPrefix + "0",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Message: `{"commit":"0123456789abcdef0123456789abcdef01234567","repository":"https://git.example/app.git","submodulesLeftOut":["vendor/lib","third_party/x"]}` + "\n",
			}},
		}}},
	}
	repos := repositories(pod)
	require.Len(t, repos, 1)
	assert.Equal(t, "0123456789abcdef0123456789abcdef01234567", repos[0].Commit)
	assert.Equal(t, []string{"vendor/lib", "third_party/x"}, repos[0].SubmodulesLeftOut)
}
