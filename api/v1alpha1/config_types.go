package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConfigName is the only name a KubeOpenCodeConfig may have.
const ConfigName = "cluster"

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=kubeopencode
// +kubebuilder:printcolumn:name="Registry",type=string,JSONPath=`.spec.systemImage.registry`
// +kubebuilder:printcolumn:name="Tag",type=string,JSONPath=`.spec.systemImage.tag`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'cluster'",message="KubeOpenCodeConfig is a singleton: its metadata.name must be \"cluster\""

// KubeOpenCodeConfig holds settings for the whole cluster. There is at most
// one, named "cluster".
type KubeOpenCodeConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the settings.
	// +optional
	Spec KubeOpenCodeConfigSpec `json:"spec,omitempty"`
}

// KubeOpenCodeConfigSpec holds the settings.
type KubeOpenCodeConfigSpec struct {
	// SystemImage selects the registry and tag of the git-init and
	// context-init images. The controller resolves the tag to a digest
	// before it creates a Job; Jobs never run a mutable tag. When absent,
	// the digests the controller was deployed with are used.
	// +optional
	SystemImage *SystemImage `json:"systemImage,omitempty"`
}

// SystemImage selects the registry and tag of the init images.
//
// +kubebuilder:validation:XValidation:rule="has(self.registry) || has(self.tag)",message="systemImage needs registry, tag or both"
type SystemImage struct {
	// Registry holds the images as <registry>/git-init and
	// <registry>/context-init, for example "ghcr.io/kubeopencode" or
	// "registry.internal:5000/mirror/kubeopencode". Default: the registry of
	// the images the controller was deployed with.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`
	Registry string `json:"registry,omitempty"`

	// Tag of the images, for example "v0.3.1". Default: the controller's own version.
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`
	Tag string `json:"tag,omitempty"`

	// ImagePullPolicy of the init containers. Default IfNotPresent: the
	// references are digests, so a cached image is always the right one.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
}

// +kubebuilder:object:root=true

// KubeOpenCodeConfigList is a list of KubeOpenCodeConfigs.
type KubeOpenCodeConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubeOpenCodeConfig `json:"items"`
}

func init() {
	SchemeBuilder.Register(&KubeOpenCodeConfig{}, &KubeOpenCodeConfigList{})
}
