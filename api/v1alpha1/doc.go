// Package v1alpha1 is the kubeopencode.io/v1alpha1 API: Task, Agent and
// KubeOpenCodeConfig.
//
// A Task is one run of an AI coding agent: a prompt and the context it works
// on. An Agent says how Tasks run: the image and command, the credentials,
// the pod settings and how many Tasks may run at once. KubeOpenCodeConfig
// holds the few settings that apply to the whole cluster.
//
// Cross-field rules live on the types as CEL expressions, so the API server
// rejects bad input at admission with a message that names the field.
//
// +kubebuilder:object:generate=true
// +groupName=kubeopencode.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "kubeopencode.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
