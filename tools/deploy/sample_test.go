package deploy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// The sample Agent's allow-list entry for a model URL: a name stays a
// name, an address becomes its one-address cidr, the port is the URL's or
// the scheme's.
func TestModelEgress(t *testing.T) {
	for url, want := range map[string]v1alpha1.EgressRule{
		"https://api.example.com/v1":          {Host: "api.example.com", Ports: []int32{443}},
		"http://Models.Example.COM./v1":       {Host: "models.example.com", Ports: []int32{80}},
		"http://10.89.0.1:40027/s/default/v1": {CIDR: "10.89.0.1/32", Ports: []int32{40027}},
		"https://[2001:db8::7]:8443/v1":       {CIDR: "2001:db8::7/128", Ports: []int32{8443}},
	} {
		got, err := ModelEgress(url)
		require.NoError(t, err, url)
		assert.Equal(t, want, got, url)
	}
	for url, msg := range map[string]string{
		"api.example.com/v1":             "want http:// or https:// and a host",
		"ftp://api.example.com":          "want http:// or https:// and a host",
		"https://api.example.com:0/v1":   `port "0" is not a port number`,
		"https://api.example.com:99999/": `port "99999" is not a port number`,
	} {
		_, err := ModelEgress(url)
		assert.ErrorContains(t, err, msg, url)
	}
}

// An OpenAI-compatible model: OpenCode gets the provider with the sample
// credential's variable as its key, and the pods the endpoint's host.
func TestOpenAICompatible(t *testing.T) {
	m, err := OpenAICompatible("endpoint", "https://llm.internal.example:8443/v1", "big-model")
	require.NoError(t, err)
	assert.Equal(t, "endpoint/big-model", m.Name)
	assert.Equal(t, []v1alpha1.EgressRule{{Host: "llm.internal.example", Ports: []int32{8443}}}, m.Egress)
	var cfg struct {
		Provider map[string]struct {
			Options map[string]string `json:"options"`
			Models  map[string]any    `json:"models"`
		} `json:"provider"`
	}
	require.NoError(t, json.Unmarshal([]byte(m.Config), &cfg))
	p := cfg.Provider["endpoint"]
	assert.Equal(t, "https://llm.internal.example:8443/v1", p.Options["baseURL"])
	assert.Equal(t, "{env:ANTHROPIC_API_KEY}", p.Options["apiKey"])
	assert.Contains(t, p.Models, "big-model")
}

func TestProviderModel(t *testing.T) {
	m, err := ProviderModel("openai/gpt-5")
	require.NoError(t, err)
	assert.Equal(t, SampleModel{Name: "openai/gpt-5", Egress: []v1alpha1.EgressRule{{Host: "api.openai.com", Ports: []int32{443}}}}, m)
	_, err = ProviderModel("acme/model-1")
	assert.ErrorContains(t, err, `model "acme/model-1": egress isolation needs the provider's API host, known for anthropic, deepseek, google, groq, mistral, openai, openrouter, xai`)
}
