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
