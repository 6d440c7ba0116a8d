package modelserver_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/agentimages/opencode"
	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

// opencodeBinary extracts the pinned OpenCode binary (fetched once per
// machine into the image builder's cache) into dir.
func opencodeBinary(t *testing.T, dir string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("OpenCode's pinned packages are Linux builds")
	}
	npm, ok := images.OpenCodeNPM[runtime.GOARCH]
	if !ok {
		t.Skipf("no OpenCode package is pinned for %s", runtime.GOARCH)
	}
	tgz, err := (&imagebuilder.Fetcher{}).NPM(context.Background(), npm)
	require.NoError(t, err)
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("the OpenCode package has no package/bin/opencode")
		}
		require.NoError(t, err)
		if h.Name == "package/bin/opencode" {
			bin := filepath.Join(dir, "opencode")
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			require.NoError(t, err)
			_, err = io.Copy(f, tr)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			return bin
		}
	}
}

// runOpenCode runs `opencode run --format json` in ws on the prompt
// "Do the task." with the configuration cfg, isolated in home, and returns
// its stdout: the event stream.
func runOpenCode(t *testing.T, bin, ws, home string, cfg []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--format", "json")
	cmd.Dir = ws
	cmd.Stdin = strings.NewReader("Do the task.")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"XDG_CONFIG_HOME=" + home + "/.config", "XDG_DATA_HOME=" + home + "/.local/share",
		"XDG_STATE_HOME=" + home + "/.local/state", "XDG_CACHE_HOME=" + home + "/.cache",
		"OPENCODE_DISABLE_AUTOUPDATE=1", "OPENCODE_DISABLE_MODELS_FETCH=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1", "OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_CONFIG_CONTENT=" + string(cfg),
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "stderr: %s", stderr.String())
	return out
}

// TestRealOpenCodeAgainstScript drives the real OpenCode binary through the
// scripted model over both wire protocols, streaming, with tool calls:
// OpenCode must parse every event the server frames, run the tools the
// script asks for, send their results back and finish with the final text.
func TestRealOpenCodeAgainstScript(t *testing.T) {
	dir := t.TempDir()
	bin := opencodeBinary(t, dir)
	srv, err := modelserver.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(srv.Close)

	for _, api := range []struct{ name, npm string }{
		{"openai", "@ai-sdk/openai-compatible"},
		{"anthropic", "@ai-sdk/anthropic"},
	} {
		t.Run(api.name, func(t *testing.T) {
			ws := filepath.Join(dir, api.name, "ws")
			home := filepath.Join(dir, api.name, "home")
			require.NoError(t, os.MkdirAll(ws, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(ws, "input.txt"), []byte("from the input file\n"), 0o644))
			base := srv.Handle(api.name, modelserver.Steps(
				modelserver.Reply{Text: "Reading first.", ToolCalls: []modelserver.ToolCall{{Name: "read", Arguments: `{"filePath": "` + ws + `/input.txt"}`}}},
				modelserver.Reply{ToolCalls: []modelserver.ToolCall{{Name: "write", Arguments: `{"filePath": "` + ws + `/out.txt", "content": "written by the agent\n"}`}}},
				modelserver.Reply{ToolCalls: []modelserver.ToolCall{{Name: "bash", Arguments: `{"command": "cat out.txt", "description": "Show the file"}`}}},
				modelserver.Reply{Text: "All done."},
			))
			cfg, err := json.Marshal(map[string]any{
				"model":      "scripted/test-model",
				"permission": map[string]any{"edit": "allow", "bash": "allow", "external_directory": "allow"},
				"provider": map[string]any{"scripted": map[string]any{
					"npm": api.npm, "name": "Scripted",
					"options": map[string]any{"baseURL": base, "apiKey": "test-key"},
					"models":  map[string]any{"test-model": map[string]any{"name": "test", "tool_call": true}},
				}},
			})
			require.NoError(t, err)
			out := runOpenCode(t, bin, ws, home, cfg)

			written, err := os.ReadFile(filepath.Join(ws, "out.txt"))
			require.NoError(t, err, "OpenCode ran the write tool")
			assert.Equal(t, "written by the agent\n", string(written))
			assert.Contains(t, string(out), `"reason":"stop"`, "the run ended with the final answer")
			assert.Contains(t, string(out), `"text":"All done."`)

			var turns []int
			for _, r := range srv.Requests(api.name) {
				if len(r.Tools) == 0 {
					continue
				}
				assert.Equal(t, api.name, r.API)
				assert.True(t, r.Stream, "OpenCode streams")
				assert.Equal(t, modelserver.KeyFingerprint("test-key"), r.KeyFingerprint)
				turns = append(turns, r.Turn)
			}
			assert.Equal(t, []int{0, 1, 2, 3}, turns, "one request per step, each with the conversation so far")
			reqs := srv.Requests(api.name)
			last := reqs[len(reqs)-1]
			assert.Contains(t, last.Text(), "from the input file", "the read tool's result went back to the model")
			assert.Contains(t, last.Text(), "written by the agent", "so did the bash tool's output")
			assert.Contains(t, reqs[len(reqs)-1].Messages[0].Text, "Do the task.", "the prompt came from stdin")
		})
	}
}

// TestRealOpenCodeUsage runs the real OpenCode on a two-step script whose
// replies report token usage, and reads its event stream as the agent
// image's launcher does: the usage and cost summed over the steps must be
// what each protocol's usage means under the model's configured prices.
//
// OpenCode counts the two protocols differently. Anthropic reports input
// tokens, cache reads and cache writes apart, and OpenCode keeps them apart.
// OpenAI-compatible providers report every prompt token in prompt_tokens,
// cached reads among them, and have no field for cache writes: OpenCode
// takes input as prompt_tokens minus the cached reads, so the cache writes
// are counted, and priced, as input.
func TestRealOpenCodeUsage(t *testing.T) {
	dir := t.TempDir()
	bin := opencodeBinary(t, dir)
	srv, err := modelserver.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(srv.Close)

	// US dollars per million tokens, as OpenCode's model configuration
	// gives them.
	const priceInput, priceOutput, priceCacheRead, priceCacheWrite = 3.0, 15.0, 0.3, 3.75
	steps := []modelserver.Usage{
		{InputTokens: 1000, OutputTokens: 200, CacheReadTokens: 30000, CacheWriteTokens: 4000},
		{InputTokens: 5, OutputTokens: 7, CacheReadTokens: 11, CacheWriteTokens: 13},
	}
	for _, api := range []struct {
		name, npm string
		// counted is a step's usage as OpenCode reports it.
		counted func(modelserver.Usage) contract.Usage
	}{
		{"openai", "@ai-sdk/openai-compatible", func(u modelserver.Usage) contract.Usage {
			return contract.Usage{InputTokens: u.InputTokens + u.CacheWriteTokens, OutputTokens: u.OutputTokens, CacheReadTokens: u.CacheReadTokens}
		}},
		{"anthropic", "@ai-sdk/anthropic", func(u modelserver.Usage) contract.Usage {
			return contract.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CacheReadTokens: u.CacheReadTokens, CacheWriteTokens: u.CacheWriteTokens}
		}},
	} {
		t.Run(api.name, func(t *testing.T) {
			ws := filepath.Join(dir, api.name, "ws")
			home := filepath.Join(dir, api.name, "home")
			require.NoError(t, os.MkdirAll(ws, 0o755))
			script := "usage-" + api.name
			base := srv.Handle(script, modelserver.Steps(
				modelserver.Reply{Text: "Checking the workspace.", Usage: &steps[0],
					ToolCalls: []modelserver.ToolCall{{Name: "bash", Arguments: `{"command": "echo workspace-checked", "description": "Check the workspace"}`}}},
				modelserver.Reply{Text: "All done.", Usage: &steps[1]},
			))
			cfg, err := json.Marshal(map[string]any{
				"model":      "scripted/test-model",
				"permission": map[string]any{"edit": "allow", "bash": "allow", "external_directory": "allow"},
				"provider": map[string]any{"scripted": map[string]any{
					"npm": api.npm, "name": "Scripted",
					"options": map[string]any{"baseURL": base, "apiKey": "test-key"},
					"models": map[string]any{"test-model": map[string]any{
						"name": "test", "tool_call": true,
						"cost": map[string]any{"input": priceInput, "output": priceOutput, "cache_read": priceCacheRead, "cache_write": priceCacheWrite},
					}},
				}},
			})
			require.NoError(t, err)
			out := runOpenCode(t, bin, ws, home, cfg)

			var transcript strings.Builder
			v := opencode.Follow(bytes.NewReader(out), &transcript)
			require.True(t, v.OK(), "%s\n%s", v.Problem, transcript.String())
			assert.Equal(t, "All done.", v.FinalText)
			assert.Equal(t, []string{"bash"}, v.ToolCalls)
			assert.Contains(t, transcript.String(), opencode.Indent+"workspace-checked\n", "the bash tool ran")

			var want contract.Usage
			for _, s := range steps {
				c := api.counted(s)
				want.InputTokens += c.InputTokens
				want.OutputTokens += c.OutputTokens
				want.CacheReadTokens += c.CacheReadTokens
				want.CacheWriteTokens += c.CacheWriteTokens
				want.CostUSD += (float64(c.InputTokens)*priceInput + float64(c.OutputTokens)*priceOutput +
					float64(c.CacheReadTokens)*priceCacheRead + float64(c.CacheWriteTokens)*priceCacheWrite) / 1e6
			}
			want.Steps = int64(len(steps))
			got := v.Usage
			assert.InDelta(t, want.CostUSD, got.CostUSD, 1e-9, "cost")
			got.CostUSD, want.CostUSD = 0, 0
			assert.Equal(t, want, got)
		})
	}
}
